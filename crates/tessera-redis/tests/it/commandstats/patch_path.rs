//! A session write through `Store::patch` costs exactly one round trip:
//! one `EVALSHA`, counted by the servers themselves (`INFO commandstats`,
//! which also counts the commands the script runs inside). On servers of
//! its own (see `commandstats/mod.rs`), so no concurrent test adds
//! commands to the count.

use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use tessera::store::{Activity, Patch, PatchOp, PatchOutcome, PatchRefusal, Store};
use tessera::testkit::{sample_record, unique_user};
use tessera::time::{Clock, SystemClock};

use super::{Private, counters, delta, total};
use crate::common;

/// What one applied patch costs: the script and the two commands it runs
/// (`GET` of the record, `SET … PXAT` of the new one with its expiry).
fn one_script() -> HashMap<String, u64> {
    HashMap::from([
        ("evalsha".to_owned(), 1),
        ("get".to_owned(), 1),
        ("set".to_owned(), 1),
    ])
}

async fn check(store: tessera_redis::RedisStore, nodes: Vec<String>) {
    let nodes = counters(&nodes).await;
    let (_, record) = sample_record(Some(&unique_user("patch")));
    store.create(&record).await.unwrap();
    let patch = Patch {
        activity: Some(Activity {
            idle: Duration::from_secs(60),
            remember_idle: Duration::from_secs(60),
        }),
        ..Patch::new(vec![
            PatchOp::Increment {
                key: "counter".into(),
                by: 1,
            },
            PatchOp::Set {
                key: "theme".into(),
                value: json!("dark"),
            },
            PatchOp::Remove { key: "k".into() },
        ])
    };
    // Warm the script cache: a first call may pay a NOSCRIPT + SCRIPT LOAD.
    let _ = store
        .patch(&record.hash, None, &Patch::default(), SystemClock.now())
        .await
        .unwrap();
    let before = total(&nodes).await;
    let now = SystemClock.now();
    let PatchOutcome::Applied(written) =
        store.patch(&record.hash, None, &patch, now).await.unwrap()
    else {
        panic!("the session is live");
    };
    let d = delta(&before, &total(&nodes).await);
    assert_eq!(d, one_script(), "a patch is one EVALSHA, saw {d:?}");
    assert_eq!(written.data["counter"], 1);
    assert_eq!(written.data["theme"], "dark");
    assert!(!written.data.contains_key("k"));
    assert_eq!(written.last_seen_at, now);
    assert_eq!(written.deadlines.idle, now + Duration::from_secs(60));
    assert_eq!(written.version, record.version + 2);
    assert_eq!(store.load(&written.hash).await.unwrap().unwrap(), written);

    // A refusal is one round trip too, and writes nothing.
    let refused = Patch::new(vec![PatchOp::CompareAndSet {
        key: "counter".into(),
        expected: Some(json!(41)),
        new: Some(json!(42)),
    }]);
    let before = total(&nodes).await;
    let outcome = store
        .patch(&record.hash, None, &refused, SystemClock.now())
        .await
        .unwrap();
    let d = delta(&before, &total(&nodes).await);
    assert_eq!(
        outcome,
        PatchOutcome::Refused {
            why: PatchRefusal::Expectation,
            record: written.clone()
        }
    );
    assert_eq!(
        d,
        HashMap::from([("evalsha".to_owned(), 1), ("get".to_owned(), 1)]),
        "saw {d:?}"
    );
    assert_eq!(store.load(&written.hash).await.unwrap().unwrap(), written);
}

#[tokio::test]
async fn a_patch_costs_exactly_one_round_trip_on_standalone_and_cluster() {
    let servers = Private::start();
    let standalone = common::connect_to(&servers.standalone, "patch").await;
    check(standalone, common::nodes(&servers.standalone)).await;
    let cluster = common::connect_to(&servers.cluster, "patch").await;
    assert!(cluster.is_cluster());
    check(cluster, common::nodes(&servers.cluster)).await;
}
