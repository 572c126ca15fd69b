//! Criterion micro-benchmarks of the per-request hot path (issue 7, item 3):
//! token generation, parsing and hashing; CSRF mask and verify; record
//! (de)serialization as the stores keep it (serde_json); cookie header
//! parsing. Run with `cargo bench --manifest-path bench/Cargo.toml`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tessera::cookie::CookieConfig;
use tessera::csrf::CsrfSecret;
use tessera::policy::SessionPolicy;
use tessera::record::{ClientMeta, SessionRecord};
use tessera::time::Timestamp;
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
            Some("203.0.113.7".into()),
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

criterion_group!(benches, tokens, csrf, record, cookie);
criterion_main!(benches);
