//! Resident memory per live session in an in-process store (the scale test
//! of docs/performance.md: "memory store at 1,000,000 live sessions with small data").
//!
//! ```text
//! bench-memsize <tessera|tower-sessions> [N=1000000]
//! ```
//!
//! Creates N sessions, each signed in as its own user with no other data
//! (what `POST /login` of the bench server stores), through the store's
//! public API, and prints `resident bytes per session` as the growth of
//! `VmRSS` divided by N. Run each store in its own process so one does not
//! inherit the other's freed-but-resident heap.

#![forbid(unsafe_code)]

use std::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Resident set size of this process in bytes, from `/proc/self/status`.
fn rss_bytes() -> Result<u64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or("no VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let which = args
        .next()
        .ok_or("usage: bench-memsize <tessera|tower-sessions> [N]")?;
    let n: u64 = match args.next() {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let started = Instant::now();
    let (before, after, len) = match which.as_str() {
        "tessera" => tessera_sessions(n).await?,
        "tower-sessions" => tower_sessions_sessions(n).await?,
        other => return Err(format!("unknown store {other}").into()),
    };
    let delta = after.saturating_sub(before);
    // Integer division is exact enough at N = 1,000,000.
    let per = delta.checked_div(n).unwrap_or(0);
    println!(
        "store={which} sessions={len} rss_before={before} rss_after={after} bytes_per_session={per} seconds={:.1}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn tessera_sessions(n: u64) -> Result<(u64, u64, usize), BoxError> {
    use tessera::policy::SessionPolicy;
    use tessera::record::{ClientMeta, SessionRecord};
    use tessera::store::{MemoryStore, Store};
    use tessera::time::{Clock, SystemClock};
    use tessera::token::SessionToken;

    let store = MemoryStore::new();
    let policy = SessionPolicy::default();
    let before = rss_bytes()?;
    for i in 0..n {
        let now = SystemClock.now();
        let token = SessionToken::generate()?;
        let record = SessionRecord::new(
            token.hash(),
            Some(format!("user{i}")),
            now,
            policy.deadlines_at(now),
            ClientMeta::default(),
        )?;
        store.create(&record).await?;
    }
    let after = rss_bytes()?;
    Ok((before, after, store.len()))
}

async fn tower_sessions_sessions(n: u64) -> Result<(u64, u64, usize), BoxError> {
    use std::collections::HashMap;
    use tower_sessions::MemoryStore;
    use tower_sessions::cookie::time::{Duration, OffsetDateTime};
    use tower_sessions::session::{Id, Record};
    use tower_sessions::session_store::SessionStore;

    let store = MemoryStore::default();
    let before = rss_bytes()?;
    for i in 0..n {
        let mut data = HashMap::new();
        data.insert(
            "user_id".to_owned(),
            serde_json::Value::from(format!("user{i}")),
        );
        let mut record = Record {
            id: Id::default(),
            data,
            expiry_date: OffsetDateTime::now_utc() + Duration::minutes(30),
        };
        store.create(&mut record).await?;
    }
    let after = rss_bytes()?;
    let len = usize::try_from(n)?;
    Ok((before, after, len))
}
