//! Revocation latency across two instances with caches on PostgreSQL: node A
//! revokes a session that node B holds in its cache; the time until B
//! refuses it is measured, over many revocations, and printed as
//! p50/p99/max.
//!
//! ```text
//! cargo run --release -p tessera-sql --example revocation_latency_pg -- postgres://localhost/tessera 1000
//! ```
//!
//! Each node has its own connections and its own `CachedStore`, as two
//! processes would; the staleness bound is set to a minute, so B refuses
//! only because the invalidation message reached it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera::cache::{CacheConfig, CachedStore};
use tessera::record::{ClientMeta, Data};
use tessera::{Access, Revocation, SessionManager};
use tessera_sql::{PgChannel, SqlStore};

async fn node(url: &str) -> (SessionManager, CachedStore<SqlStore>) {
    let store = SqlStore::connect(url).await.expect("connect to PostgreSQL");
    let channel = Arc::new(PgChannel::for_store(&store).expect("a postgres:// URL"));
    let config = CacheConfig {
        max_staleness: Duration::from_secs(60),
        ..CacheConfig::default()
    };
    let cache = CachedStore::new(store, config, channel);
    let manager = SessionManager::builder(cache.clone()).build().unwrap();
    while !cache.stats().live {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (manager, cache)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let count: usize = args.next().map_or(1000, |n| n.parse().expect("a count"));
    let (a, _) = node(&url).await;
    let (b, b_cache) = node(&url).await;
    let latencies = measure(&a, &b, count).await;
    report("postgres", &latencies);
    let stats = b_cache.stats();
    println!(
        "node B: hit rate {:.3}, invalidations received {}, flushes {}",
        stats.hit_rate(),
        stats.invalidations_received,
        stats.flushes
    );
}

/// Creates on A, caches on B, revokes on A and times B's first refusal.
async fn measure(a: &SessionManager, b: &SessionManager, count: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let issued = a
            .create(Some("alice".into()), Data::new(), ClientMeta::default())
            .await
            .unwrap();
        let token = issued.token.expose();
        b.load(token, Access::Status).await.unwrap();
        b.load(token, Access::Status).await.unwrap();
        let start = Instant::now();
        a.revoke(&issued.record.handle, None, Revocation::Admin)
            .await
            .unwrap();
        let deadline = start + Duration::from_secs(10);
        while b.load(token, Access::Status).await.is_ok() {
            assert!(Instant::now() < deadline, "B never refused");
            tokio::task::yield_now().await;
        }
        latencies.push(start.elapsed());
    }
    latencies
}

fn report(backend: &str, latencies: &[Duration]) {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let at = |q: f64| {
        let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted[i]
    };
    println!(
        "{backend}: {} revocations, revoke on A → refused on B: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sorted.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        sorted[sorted.len() - 1].as_secs_f64() * 1e3,
    );
}
