//! Tests that count the Redis commands of one operation with the servers'
//! own `INFO commandstats`, on standalone Redis and on the Cluster. The
//! counters are server-wide, so these tests run in a binary of their own,
//! one at a time (`SERIAL`): no other test may send commands while they
//! count. Everything else is in `tests/it`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../common/mod.rs"]
mod common;
mod patch_path;
mod read_path;

use std::collections::HashMap;

use fred::prelude::*;
use fred::types::InfoKind;

/// One counting test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
