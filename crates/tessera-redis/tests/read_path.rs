//! The read path of a request costs exactly two Redis commands sent
//! together — the session's `HGET` and the kill switches' `HMGET`
//! (src/not_before.rs), pipelined: one round trip — counted by the servers
//! themselves (`INFO commandstats`). Its own binary, with one test, so no
//! concurrent test adds commands to the count.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::HashMap;

use fred::prelude::*;
use fred::types::InfoKind;
use tessera::store::Store;
use tessera::testkit::{sample_record, unique_user};

/// One plain client per node, connected before counting starts so that
/// its own handshake is not counted.
async fn counters(nodes: &[String]) -> Vec<Client> {
    let mut out = Vec::new();
    for node in nodes {
        let (host, port) = node.rsplit_once(':').unwrap();
        let client = Builder::from_config(Config {
            server: ServerConfig::new_centralized(host, port.parse().unwrap()),
            ..Config::default()
        })
        .build()
        .unwrap();
        client.init().await.unwrap();
        out.push(client);
    }
    out
}

/// Calls per command, summed over all nodes, ignoring our own `INFO`.
async fn total(counters: &[Client]) -> HashMap<String, u64> {
    let mut sum = HashMap::new();
    for client in counters {
        let info: String = client.info(Some(InfoKind::CommandStats)).await.unwrap();
        for line in info.lines() {
            let Some((name, rest)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let calls: u64 = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .unwrap()
                .parse()
                .unwrap();
            if name != "info" {
                *sum.entry(name.to_owned()).or_insert(0) += calls;
            }
        }
    }
    sum
}

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> HashMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

async fn check(store: tessera_redis::RedisStore, nodes: Vec<String>) {
    let nodes = counters(&nodes).await;
    let (_, record) = sample_record(Some(&unique_user("read")));
    store.create(&record).await.unwrap();
    let before = total(&nodes).await;
    let loaded = store.load(&record.hash).await.unwrap().expect("record");
    let after = total(&nodes).await;
    assert_eq!(loaded, record);
    let d = delta(&before, &after);
    let read = HashMap::from([("hget".to_owned(), 1), ("hmget".to_owned(), 1)]);
    assert_eq!(
        d, read,
        "loading a session must cost exactly one HGET and one HMGET, saw {d:?}"
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
    let url = common::url("TESSERA_TEST_REDIS_URL");
    check(common::standalone("read").await, common::nodes(&url)).await;
    let url = common::url("TESSERA_TEST_REDIS_CLUSTER_URL");
    check(common::cluster("read").await, common::nodes(&url)).await;
}
