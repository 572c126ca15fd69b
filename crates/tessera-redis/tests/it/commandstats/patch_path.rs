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

/// With the record the request loaded as `base`, the write is the
/// compare-and-set script (one round trip, the same three counted
/// commands); a base made stale by another process (`other`, a store of
/// its own) costs one more script and loses nothing.
async fn check_loaded(
    store: tessera_redis::RedisStore,
    other: tessera_redis::RedisStore,
    nodes: Vec<String>,
) {
    let nodes = counters(&nodes).await;
    let (_, record) = sample_record(Some(&unique_user("patch-loaded")));
    store.create(&record).await.unwrap();
    let inc = Patch::new(vec![PatchOp::Increment {
        key: "counter".into(),
        by: 1,
    }]);
    let now = SystemClock.now();
    // Warm the script cache (a first call may pay a NOSCRIPT + SCRIPT
    // LOAD) on a session of its own.
    let (_, warm) = sample_record(Some(&unique_user("patch-loaded")));
    store.create(&warm).await.unwrap();
    let warmed = store.patch(&warm.hash, Some(&warm), &inc, now).await;
    assert!(matches!(warmed, Ok(PatchOutcome::Applied(_))), "{warmed:?}");
    let before = total(&nodes).await;
    let PatchOutcome::Applied(first) = store
        .patch(&record.hash, Some(&record), &inc, now)
        .await
        .unwrap()
    else {
        panic!("the session is live");
    };
    let d = delta(&before, &total(&nodes).await);
    assert_eq!(d, one_script(), "a write from the loaded record, saw {d:?}");
    assert_eq!(first.data["counter"], 1);
    assert_eq!(first.version, record.version + 1);

    // Another process writes: `first` is now stale, the script hands back
    // the stored value and the increment is applied to it, not to the
    // stale copy.
    let PatchOutcome::Applied(elsewhere) = other
        .patch(&record.hash, Some(&first), &inc, now)
        .await
        .unwrap()
    else {
        panic!("the session is live");
    };
    assert_eq!(elsewhere.data["counter"], 2);
    let before = total(&nodes).await;
    let PatchOutcome::Applied(second) = store
        .patch(&record.hash, Some(&first), &inc, now)
        .await
        .unwrap()
    else {
        panic!("the session is live");
    };
    let d = delta(&before, &total(&nodes).await);
    assert_eq!(
        d,
        HashMap::from([
            ("evalsha".to_owned(), 2),
            ("get".to_owned(), 2),
            ("set".to_owned(), 1)
        ]),
        "a stale base: one conflict, one write, saw {d:?}"
    );
    assert_eq!(second.data["counter"], 3);
    assert_eq!(second.version, record.version + 3);
    assert_eq!(store.load(&record.hash).await.unwrap().unwrap(), second);
}

#[tokio::test]
async fn a_patch_from_the_loaded_record_is_the_compare_and_set_script() {
    let servers = Private::start();
    for url in [&servers.standalone, &servers.cluster] {
        // Two processes' stores: one prefix, a connection (and the
        // memory of in-flight writes) each.
        let prefix = common::unique_prefix("patch-loaded");
        let connect = || {
            tessera_redis::RedisStore::connect(
                url,
                tessera_redis::RedisOptions::default().with_key_prefix(prefix.clone()),
            )
        };
        let (store, other) = (connect().await.unwrap(), connect().await.unwrap());
        check_loaded(store, other, common::nodes(url)).await;
    }
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
