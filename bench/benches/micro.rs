//! Criterion micro-benchmarks of the per-request hot path:
//! token generation, parsing and hashing; CSRF mask and verify; record
//! (de)serialization as the stores keep it (serde_json); cookie header
//! parsing; the write path of `Store::patch` (applying a patch, the memory
//! store, and with `BENCH_REDIS_URL` the Redis patch script against the
//! compare-and-set write it replaces). Run with
//! `cargo bench --manifest-path bench/Cargo.toml`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tessera::cookie::CookieConfig;
use tessera::csrf::CsrfSecret;
use tessera::policy::SessionPolicy;
use tessera::record::{ClientMeta, SessionRecord};
use tessera::store::{MemoryStore, Modify, Patch, PatchOp, Store};
use tessera::time::{Clock, Timestamp};
use tessera::token::SessionToken;

fn tokens(c: &mut Criterion) {
    let mut g = c.benchmark_group("token");
    g.bench_function("generate", |b| b.iter(|| SessionToken::generate().unwrap()));
    let token = SessionToken::generate().unwrap();
    let text = token.expose().to_owned();
    g.bench_function("parse", |b| {
        b.iter(|| SessionToken::parse(black_box(&text)).unwrap())
    });
    g.bench_function("hash", |b| b.iter(|| black_box(&token).hash()));
    g.bench_function("parse+hash", |b| {
        b.iter(|| SessionToken::parse(black_box(&text)).unwrap().hash())
    });
    g.finish();
}

fn csrf(c: &mut Criterion) {
    let mut g = c.benchmark_group("csrf");
    let secret = CsrfSecret::generate().unwrap();
    let masked = secret.masked_token().unwrap();
    g.bench_function("mask", |b| {
        b.iter(|| black_box(&secret).masked_token().unwrap())
    });
    g.bench_function("verify", |b| {
        b.iter(|| black_box(&secret).verify(black_box(&masked)))
    });
    g.finish();
}

fn record(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    let now = Timestamp::from_millis(1_750_000_000_000);
    let mut record = SessionRecord::new(
        SessionToken::generate().unwrap().hash(),
        Some("user-123456".to_owned()),
        now,
        SessionPolicy::default().deadlines_at(now),
        ClientMeta::new(
            Some([203, 0, 113, 7].into()),
            Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        ),
    )
    .unwrap();
    record
        .data
        .insert("counter".to_owned(), serde_json::Value::from(42));
    let json = serde_json::to_string(&record).unwrap();
    g.bench_function("serialize", |b| {
        b.iter(|| serde_json::to_string(black_box(&record)).unwrap())
    });
    g.bench_function("deserialize", |b| {
        b.iter(|| serde_json::from_str::<SessionRecord>(black_box(&json)).unwrap())
    });
    g.bench_function("clone", |b| b.iter(|| black_box(&record).clone()));
    g.finish();
}

fn cookie(c: &mut Criterion) {
    let mut g = c.benchmark_group("cookie");
    let config = CookieConfig::default();
    let token = SessionToken::generate().unwrap();
    let alone = format!("__Host-session={}", token.expose());
    let crowded = format!(
        "_ga=GA1.1.123456789.1700000000; theme=dark; lang=en-GB; __Host-session={}; consent=yes; _gid=GA1.1.987654321",
        token.expose()
    );
    g.bench_function("find_token/alone", |b| {
        b.iter(|| config.find_token([black_box(alone.as_str())]))
    });
    g.bench_function("find_token/crowded", |b| {
        b.iter(|| config.find_token([black_box(crowded.as_str())]))
    });
    g.bench_function("set_cookie", |b| {
        b.iter(|| config.set_cookie(black_box(&token), std::time::Duration::from_secs(43_200)))
    });
    g.finish();
}

fn sample(now: Timestamp) -> SessionRecord {
    let mut record = SessionRecord::new(
        SessionToken::generate().unwrap().hash(),
        Some("user-123456".to_owned()),
        now,
        SessionPolicy::default().deadlines_at(now),
        ClientMeta::new(Some([203, 0, 113, 7].into()), Some("bench/1.0".into())),
    )
    .unwrap();
    record.data.insert("counter".to_owned(), 42.into());
    record
}

/// The counter increment of `POST /counter` as a patch.
fn increment(policy: &SessionPolicy) -> Patch {
    Patch::for_policy(
        policy,
        vec![PatchOp::Increment {
            key: "counter".into(),
            by: 1,
        }],
        true,
    )
}

fn patch(c: &mut Criterion) {
    let mut g = c.benchmark_group("patch");
    let policy = SessionPolicy::default();
    let now = Timestamp::from_millis(1_750_000_000_000);
    let record = sample(now);
    let inc = increment(&policy);
    g.bench_function("apply/increment", |b| {
        b.iter(|| {
            let mut r = black_box(&record).clone();
            inc.apply(&mut r, now).unwrap();
            r
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let memory = MemoryStore::new();
    let live = sample(tessera::time::SystemClock.now());
    rt.block_on(memory.create(&live)).unwrap();
    g.bench_function("memory/patch", |b| {
        b.iter(|| {
            rt.block_on(memory.patch(&live.hash, None, &inc, tessera::time::SystemClock.now()))
                .unwrap()
        })
    });
    g.bench_function("memory/modify", |b| {
        b.iter(|| {
            rt.block_on(memory.modify(
                &live.hash,
                tessera::time::SystemClock.now(),
                &|r: &mut SessionRecord| {
                    let n = r.data.get("counter").and_then(|v| v.as_i64()).unwrap_or(0);
                    r.data.insert("counter".into(), (n + 1).into());
                    Modify::Write
                },
            ))
            .unwrap()
        })
    });
    if let Ok(url) = std::env::var("BENCH_REDIS_URL") {
        let redis = rt
            .block_on(tessera_redis::RedisStore::connect(
                &url,
                tessera_redis::RedisOptions::default().with_key_prefix("bench-micro:"),
            ))
            .unwrap();
        let live = sample(tessera::time::SystemClock.now());
        rt.block_on(redis.create(&live)).unwrap();
        // One round trip each: the patch script, and the compare-and-set of
        // the record the request loaded (the write path before patches).
        g.bench_function("redis/patch", |b| {
            b.iter(|| {
                rt.block_on(redis.patch(&live.hash, None, &inc, tessera::time::SystemClock.now()))
                    .unwrap()
            })
        });
        let mut current = rt.block_on(redis.load(&live.hash)).unwrap().unwrap();
        g.bench_function("redis/modify_loaded", |b| {
            b.iter(|| {
                let written = rt
                    .block_on(redis.modify_loaded(
                        &current,
                        tessera::time::SystemClock.now(),
                        &|r: &mut SessionRecord| {
                            let n = r.data.get("counter").and_then(|v| v.as_i64()).unwrap_or(0);
                            r.data.insert("counter".into(), (n + 1).into());
                            Modify::Write
                        },
                    ))
                    .unwrap()
                    .unwrap();
                current = written;
            })
        });
        rt.block_on(redis.delete(&live.hash)).unwrap();
    }
    g.finish();
}

criterion_group!(benches, tokens, csrf, record, cookie, patch);
criterion_main!(benches);
