//! Tests that count the Redis commands of one operation with the servers'
//! own `INFO commandstats`, on standalone Redis and on the Cluster.
//!
//! The counters are server-wide: any command another test sends while one
//! of these counts would be counted. The other tests of this binary run
//! beside them, in parallel threads, on the shared instances
//! (`TESSERA_TEST_REDIS_URL`, `TESSERA_TEST_REDIS_CLUSTER_URL`). So each
//! counting test starts a Redis and a 3-master Redis Cluster of its own
//! ([`Private`], through `scripts/services.sh`, which starts the shared
//! ones the same way) on free ports that no other test knows, and stops
//! them when it ends: the counts are exact whatever else runs.

mod patch_path;
mod read_path;

use std::collections::HashMap;

use fred::prelude::*;
use fred::types::InfoKind;

/// The `scripts/services.sh` of this workspace.
const SERVICES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/services.sh");

/// Starts one at a time: concurrent `services.sh` runs could pick the same
/// free port (each checks only the ports it handed out itself).
static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A throw-away Redis and 3-master Redis Cluster that only the test
/// holding it talks to; stopped (and their directory removed) on drop,
/// on a failed test too.
pub(crate) struct Private {
    /// The `tessera-services.*` directory, for `services.sh stop`.
    dir: String,
    /// `redis://127.0.0.1:PORT`.
    pub(crate) standalone: String,
    /// `redis-cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub(crate) cluster: String,
}

impl Private {
    pub(crate) fn start() -> Self {
        let _one = STARTING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let out = std::process::Command::new("bash")
            .args([SERVICES, "start"])
            .env("TESSERA_SERVICES", "redis cluster")
            .output()
            .expect("run scripts/services.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        // `export NAME='VALUE'` lines.
        let var = |name: &str| {
            stdout.lines().find_map(|line| {
                let rest = line.strip_prefix("export ")?.strip_prefix(name)?;
                Some(rest.strip_prefix("='")?.strip_suffix('\'')?.to_owned())
            })
        };
        let dir = var("TESSERA_SERVICES_DIR");
        let (Some(dir), Some(standalone), Some(cluster), true) = (
            dir.clone(),
            var("TESSERA_TEST_REDIS_URL"),
            var("TESSERA_TEST_REDIS_CLUSTER_URL"),
            out.status.success(),
        ) else {
            if let Some(dir) = dir {
                stop(&dir);
            }
            panic!(
                "scripts/services.sh start failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        Self {
            dir,
            standalone,
            cluster,
        }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        stop(&self.dir);
    }
}

fn stop(dir: &str) {
    let _ = std::process::Command::new("bash")
        .args([SERVICES, "stop", dir])
        .status();
}

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
