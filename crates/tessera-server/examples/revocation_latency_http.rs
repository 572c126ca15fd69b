//! Revocation latency across two real `tessera serve` processes with the
//! session cache on (figures in docs/performance.md).
//!
//! Starts instances A and B on one store with `cache = "on"` and a long
//! `cache_max_staleness` (30 s, so that only an invalidation can make B
//! refuse early), then N times: creates a session through A's API, loads
//! it through B twice (the second load is a cache hit), revokes it through
//! A (`DELETE /v1/sessions/{handle}`), and polls B's
//! `POST /v1/sessions/verify` back to back until B answers 401. The
//! latency of one revocation runs from just before A is sent the `DELETE`
//! to B's first 401; it includes A's own work (store write, publish) and
//! one HTTP round trip to B.
//!
//! ```text
//! cargo build -p tessera-server --bin tessera --example revocation_latency_http
//! target/debug/examples/revocation_latency_http --store "$TESSERA_TEST_REDIS_URL" --n 1000
//! target/debug/examples/revocation_latency_http --store "$TESSERA_TEST_POSTGRES_URL" --n 1000
//! ```
//!
//! The `tessera` binary is the one beside this example's directory
//! (`target/<profile>/tessera`), or `--bin PATH`. On PostgreSQL the run
//! uses a fresh database on the given server (created, then dropped at
//! the end, so the URL's own database is left alone); on Redis, a key
//! prefix of its own. Prints p50/p99/max, how often B still answered 200
//! after A's `DELETE` had returned, and B's cache hit rate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const METRICS_TOKEN: &str = "latency-example-metrics-token-0123456789";

/// A running `tessera serve`, killed on drop.
struct Instance {
    child: Child,
    url: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &PathBuf, store: &str, env: &[(String, String)], log: PathBuf) -> Instance {
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--store", store])
        .env("TESSERA_INSECURE_HTTP", "true")
        .env("TESSERA_METRICS_TOKEN", METRICS_TOKEN)
        .env("TESSERA_LOG_FILTER", "warn")
        .env("TESSERA_DEMO_USER", "false")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let stdout = child.stdout.take().unwrap();
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("tessera listening on ")
                .map(|u| u.trim().trim_end_matches('/').to_owned())
        })
        .unwrap_or_else(|| {
            panic!(
                "server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    Instance { child, url }
}

/// A throw-away PostgreSQL database for one run.
struct ScratchDb {
    admin: sqlx::PgPool,
    name: String,
    url: String,
}

impl ScratchDb {
    /// A fresh database beside the one `url` names; `None` for other
    /// stores.
    async fn create(url: &str) -> Option<Self> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return None;
        }
        let admin = sqlx::PgPool::connect(url).await.unwrap();
        let name = format!("tessera_latency_{}", std::process::id());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        let base = url.split('?').next().unwrap();
        let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
        let url = format!("{base}/{name}");
        Some(Self { admin, name, url })
    }

    async fn drop_database(self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::query(&sql).execute(&self.admin).await.unwrap();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    // Nearest rank.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn metric(client: &reqwest::Client, url: &str, name: &str) -> f64 {
    let text = client
        .get(format!("{url}/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let mut store = None;
    let mut n: usize = 1000;
    let mut bin = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|examples| examples.parent())
        .unwrap()
        .join("tessera");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--store" => store = Some(value),
            "--n" => n = value.parse().expect("--n is a number"),
            "--bin" => bin = PathBuf::from(value),
            other => panic!("unknown argument {other} (--store URL [--n N] [--bin PATH])"),
        }
    }
    let given = store.expect("--store redis://… or postgres://…");
    let scratch = ScratchDb::create(&given).await;
    let store = scratch.as_ref().map_or(given.clone(), |db| db.url.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("TESSERA_CACHE".to_owned(), "on".to_owned()),
        ("TESSERA_CACHE_MAX_STALENESS".to_owned(), "30s".to_owned()),
        // The signing keys are kept in the shared store, sealed: both
        // instances (and the CLI) need the same key-encryption key.
        ("TESSERA_KEY_ENCRYPTION_KEY".to_owned(), random_kek()),
    ];
    if store.starts_with("redis") {
        env.push((
            "TESSERA_STORE_KEY_PREFIX".to_owned(),
            format!("latency{}:", std::process::id()),
        ));
        env.push((
            "TESSERA_DATABASE".to_owned(),
            format!("sqlite://{}", dir.path().join("users.db").display()),
        ));
    }
    let a = start(&bin, &store, &env, dir.path().join("a.log"));
    let b = start(&bin, &store, &env, dir.path().join("b.log"));
    let out = Command::new(&bin)
        .args([
            "api-key",
            "create",
            &format!("latency-{}", std::process::id()),
        ])
        .args(["--store", &store])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let client = reqwest::Client::new();
    let verify = |url: &str, token: &str| {
        client
            .post(format!("{url}/v1/sessions/verify"))
            .bearer_auth(&key)
            .json(&json!({ "token": token }))
            .send()
    };

    // B serves from its cache only once its subscription is confirmed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = Vec::with_capacity(n);
    let mut deletes = Vec::with_capacity(n);
    let mut after_return = Vec::with_capacity(n);
    let mut stale_after_return = 0u64;
    for i in 0..n {
        let created: Value = client
            .post(format!("{}/v1/sessions", a.url))
            .bearer_auth(&key)
            .json(&json!({ "user_id": format!("user{i}") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = created["token"].as_str().unwrap().to_owned();
        let handle = created["handle"].as_str().unwrap().to_owned();
        for _ in 0..2 {
            let status = verify(&b.url, &token).await.unwrap().status();
            assert_eq!(status, 200, "B does not see A's session");
        }
        let started = Instant::now();
        let status = client
            .delete(format!("{}/v1/sessions/{handle}", a.url))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 204);
        let returned = started.elapsed();
        deletes.push(returned);
        loop {
            match verify(&b.url, &token).await.unwrap().status().as_u16() {
                401 => break,
                200 => stale_after_return += 1,
                other => panic!("B answered {other}"),
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "B never refused the revoked session"
            );
        }
        latencies.push(started.elapsed());
        after_return.push(started.elapsed() - returned);
    }
    latencies.sort();
    deletes.sort();
    after_return.sort();
    let metrics_b = (
        metric(&client, &b.url, "tessera_cache_hits_total").await,
        metric(&client, &b.url, "tessera_cache_misses_total").await,
        metric(
            &client,
            &b.url,
            "tessera_cache_invalidations_received_total",
        )
        .await,
    );
    drop((a, b));
    if let Some(db) = scratch {
        db.drop_database().await;
    }
    let (hits, misses, received) = metrics_b;
    let backend = store.split("://").next().unwrap_or("?");
    println!("store: {backend}; {n} revocations through A, each polled on B until refused");
    println!(
        "revocation latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 50.0).as_secs_f64() * 1000.0,
        percentile(&latencies, 99.0).as_secs_f64() * 1000.0,
        latencies.last().unwrap().as_secs_f64() * 1000.0,
    );
    println!(
        "of which A's DELETE round trip: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&deletes, 50.0).as_secs_f64() * 1000.0,
        percentile(&deletes, 99.0).as_secs_f64() * 1000.0,
    );
    println!(
        "from A's DELETE returning to B's first 401: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&after_return, 50.0).as_secs_f64() * 1000.0,
        percentile(&after_return, 99.0).as_secs_f64() * 1000.0,
        after_return.last().unwrap().as_secs_f64() * 1000.0,
    );
    println!("B answered 200 after A's DELETE had returned: {stale_after_return} time(s)");
    println!(
        "B: cache hits {hits}, misses {misses} (hit rate {:.1} %), invalidations received {received}",
        if hits + misses > 0.0 {
            100.0 * hits / (hits + misses)
        } else {
            0.0
        }
    );
}

/// A fresh key-encryption key for this run: base64 of 32 random bytes.
fn random_kek() -> String {
    use base64::Engine as _;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).unwrap();
    base64::engine::general_purpose::STANDARD.encode(raw)
}
