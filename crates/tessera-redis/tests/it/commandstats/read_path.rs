//! The read path of a request costs exactly two Redis commands sent
//! together — the session's `GET` and the kill switches' `HMGET`
//! (src/not_before.rs), pipelined: one round trip — counted by the servers
//! themselves (`INFO commandstats`). On servers of its own (see
//! `commandstats/mod.rs`), so no concurrent test adds commands to the
//! count.

use std::collections::HashMap;
use tessera::store::Store;
use tessera::testkit::{sample_record, unique_user};

use super::{Private, counters, delta, total};
use crate::common;

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
    let servers = Private::start();
    let standalone = common::connect_to(&servers.standalone, "read").await;
    check(standalone, common::nodes(&servers.standalone)).await;
    let cluster = common::connect_to(&servers.cluster, "read").await;
    assert!(cluster.is_cluster());
    check(cluster, common::nodes(&servers.cluster)).await;
}
