//! Revocation latency across two instances with caches on Redis: node A
//! revokes a session that node B holds in its cache; the time until B
//! refuses it is measured, over many revocations, and printed as
//! p50/p99/max.
//!
//! ```text
//! cargo run --release -p tessera-redis --example revocation_latency -- redis://127.0.0.1:6379 1000
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
use tessera_redis::{RedisChannel, RedisOptions, RedisStore};

async fn node(url: &str, prefix: &str) -> (SessionManager, CachedStore<RedisStore>) {
    let store = RedisStore::connect(url, RedisOptions::default().with_key_prefix(prefix))
        .await
        .expect("connect to Redis");
    let channel = Arc::new(RedisChannel::new(&store));
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
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let count: usize = args.next().map_or(1000, |n| n.parse().expect("a count"));
    let prefix = format!("tessera-latency:{}:", std::process::id());
    let (a, _) = node(&url, &prefix).await;
    let (b, b_cache) = node(&url, &prefix).await;
    let latencies = measure(&a, &b, count).await;
    report("redis", &latencies);
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
