//! The read path of a request costs exactly two Redis commands sent
//! together — the session's `GET` and the kill switches' `HMGET`
//! (src/not_before.rs), pipelined: one round trip — counted by the servers
//! themselves (`INFO commandstats`). Run one at a time with the other
//! counting test (see `main.rs`), so no concurrent test adds commands to
//! the count.

use std::collections::HashMap;
use tessera::store::Store;
use tessera::testkit::{sample_record, unique_user};

use crate::{common, counters, delta, total};

async fn check(store: tessera_redis::RedisStore, nodes: Vec<String>) {
    let nodes = counters(&nodes).await;
    let (_, record) = sample_record(Some(&unique_user("read")));
    store.create(&record).await.unwrap();
    let before = total(&nodes).await;
    let loaded = store.load(&record.hash).await.unwrap().expect("record");
    let after = total(&nodes).await;
    assert_eq!(loaded, record);
    let d = delta(&before, &after);
    let read = HashMap::from([("get".to_owned(), 1), ("hmget".to_owned(), 1)]);
    assert_eq!(
        d, read,
        "loading a session must cost exactly one GET and one HMGET, saw {d:?}"
    );
    // A miss costs the same.
    let (_, absent) = sample_record(None);
    let before = total(&nodes).await;
    assert!(store.load(&absent.hash).await.unwrap().is_none());
    let d = delta(&before, &total(&nodes).await);
    assert_eq!(d, read, "saw {d:?}");
}

#[tokio::test]
async fn load_costs_one_round_trip_of_two_commands_on_standalone_and_cluster() {
    let _serial = crate::SERIAL.lock().await;
    let url = common::url("TESSERA_TEST_REDIS_URL");
    check(common::standalone("read").await, common::nodes(&url)).await;
    let url = common::url("TESSERA_TEST_REDIS_CLUSTER_URL");
    check(common::cluster("read").await, common::nodes(&url)).await;
}
