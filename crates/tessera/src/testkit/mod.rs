//! The store conformance suite, and store wrappers for tests.
//!
//! Every [`Store`] implementation runs [`run_all`] unchanged in its own
//! tests, against a real backend:
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! let store = Arc::new(tessera::store::MemoryStore::new());
//! tessera::testkit::run_all(store).await;
//! # }
//! ```
//!
//! The cases use random tokens and user ids and timestamps around the real
//! time (so backends with server-side TTLs behave as in production). The
//! last case of each suite proves [`Store::delete_all`], which empties the
//! store: give each run its own scope (a fresh database, a unique Redis key
//! prefix), never one other tests use at the same time. A failing case
//! panics with the case's name and what it expected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cases;
mod dbsc_cases;
pub mod dbsc_sim;
mod not_before_cases;
mod patch_cases;
mod refresh_cases;
mod wrappers;

use std::sync::Arc;

pub use wrappers::{CountingStore, Counts, FailingStore};

use crate::policy::Deadlines;
use crate::record::{ClientMeta, SessionRecord};
use crate::refresh::RefreshStore;
use crate::store::Store;
use crate::time::{Clock, SystemClock, Timestamp};
use crate::token::SessionToken;

/// Runs every conformance case against `store`, printing each name.
///
/// # Panics
///
/// On the first case that fails.
pub async fn run_all(store: Arc<dyn Store>) {
    for (name, case) in cases::all() {
        eprintln!("testkit: {name}");
        case(store.clone()).await;
    }
}

/// Runs every refresh-token conformance case. `sessions` and `refresh`
/// are normally the same backend object.
///
/// # Panics
///
/// On the first case that fails.
pub async fn run_refresh_all(sessions: Arc<dyn Store>, refresh: Arc<dyn RefreshStore>) {
    for (name, case) in refresh_cases::all() {
        eprintln!("testkit (refresh): {name}");
        case((sessions.clone(), refresh.clone())).await;
    }
}

/// Runs every DBSC conformance case against `store` (bindings,
/// single-use challenges under concurrent consumers, bound cookies, expiry).
///
/// # Panics
///
/// On the first case that fails.
pub async fn run_dbsc_all(store: Arc<dyn crate::dbsc::DbscStore>) {
    for (name, case) in dbsc_cases::all() {
        eprintln!("testkit (dbsc): {name}");
        case(store.clone()).await;
    }
}

/// The names of all cases, in the order [`run_all`] runs them.
pub fn case_names() -> Vec<&'static str> {
    cases::all().into_iter().map(|(name, _)| name).collect()
}

/// A fresh record for `user`, live for an hour from the real current time,
/// with its token. Useful for store-specific tests.
///
/// ```
/// let (token, record) = tessera::testkit::sample_record(Some("alice"));
/// assert_eq!(record.hash, token.hash());
/// ```
pub fn sample_record(user: Option<&str>) -> (SessionToken, SessionRecord) {
    record_at(user, SystemClock.now(), 3_600_000)
}

/// A unique user id for a test.
pub fn unique_user(tag: &str) -> String {
    let token = SessionToken::generate().unwrap();
    format!("{tag}-{}", token.hash().fingerprint())
}

pub(crate) fn record_at(
    user: Option<&str>,
    now: Timestamp,
    ttl_ms: i64,
) -> (SessionToken, SessionRecord) {
    let token = SessionToken::generate().unwrap();
    let deadlines = Deadlines {
        idle: Timestamp::from_millis(now.as_millis() + ttl_ms),
        absolute: Timestamp::from_millis(now.as_millis() + 2 * ttl_ms),
    };
    let mut record = SessionRecord::new(
        token.hash(),
        user.map(str::to_owned),
        now,
        deadlines,
        ClientMeta::new(Some("203.0.113.7".into()), Some("testkit/1.0".into())),
    )
    .unwrap();
    record
        .data
        .insert("k".into(), serde_json::json!({"n": 1, "s": "v"}));
    record.authenticated_at = user.map(|_| now);
    (token, record)
}
