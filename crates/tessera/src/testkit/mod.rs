//! The store conformance suites, and store wrappers for tests.
//!
//! Every store runs the same cases, unchanged, against a real backend, in
//! its own tests. Three suites:
//!
//! - the store cases, for every [`Store`]: compare-and-set, atomic
//!   rotation, the per-user index, tombstones, purges, patches, caps, kill
//!   switches, races;
//! - the refresh-token cases, for a [`Store`] that is also a
//!   [`RefreshStore`];
//! - the DBSC cases, for a [`DbscStore`](crate::dbsc::DbscStore).
//!
//! # One test per case
//!
//! [`store_conformance!`](crate::store_conformance),
//! [`refresh_conformance!`](crate::refresh_conformance) and
//! [`dbsc_conformance!`](crate::dbsc_conformance) generate one
//! `#[tokio::test]` per case, named after the case, in the module where
//! they are invoked. Each test builds its own store from the fixture
//! expression (see [`Fixture`]), so every case runs, a failure names its
//! case, and one case runs by name:
//!
//! ```
//! // tests/it/my_store.rs, in a store crate (the memory store stands in).
//! mod conformance {
//!     use std::sync::Arc;
//!
//!     use tessera::store::MemoryStore;
//!
//!     tessera::store_conformance!(async { Arc::new(MemoryStore::new()) });
//! }
//!
//! mod refresh_conformance {
//!     use std::sync::Arc;
//!
//!     use tessera::store::MemoryStore;
//!
//!     tessera::refresh_conformance!(async { Arc::new(MemoryStore::new()) });
//! }
//! # fn main() {}
//! ```
//!
//! ```text
//! cargo test -p my-store --test it my_store::conformance::
//! cargo test -p my-store --test it my_store::conformance::racing_rotations_leave_one_token
//! ```
//!
//! The stores of this workspace run them this way; one case on one of
//! them, for example:
//!
//! ```text
//! cargo test -p tessera --features testkit --lib store::memory::conformance::racing_rotations_leave_one_token
//! cargo test -p tessera --features testkit --lib store::reference::conformance::racing_rotations_leave_one_token
//! cargo test -p tessera-sql --test it sqlite::conformance::racing_rotations_leave_one_token
//! cargo test -p tessera-sql --test it postgres::refresh_conformance::a_refresh_token_rotates_exactly_once
//! cargo test -p tessera-redis --test it cluster::conformance::racing_rotations_leave_one_token
//! ```
//!
//! (add `-- --exact` to leave out cases whose names extend the one given).
//!
//! # All cases in one call
//!
//! [`run_all`], [`run_refresh_all`] and [`run_dbsc_all`] run a whole suite
//! against one store, in order, and stop at the first failure; they suit
//! a store built for a single test, such as a cached store over another:
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! let store = Arc::new(tessera::store::MemoryStore::new());
//! tessera::testkit::run_all(store).await;
//! # }
//! ```
//!
//! Both forms expand the same list of cases per suite, so they never
//! disagree about what the suite is.
//!
//! # Scope
//!
//! The cases use random tokens and user ids and timestamps around the real
//! time (so backends with server-side TTLs behave as in production). The
//! last case of the store and refresh suites proves [`Store::delete_all`],
//! which empties the store, and one store case sets the store-wide
//! not-before: give each test, and each `run_*` call, a scope of its own
//! (a fresh database, a unique Redis key prefix), never one that other
//! tests use at the same time. A failing case panics with what it
//! expected; `run_*` first print each case's name.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[doc(hidden)]
pub mod cases;
#[doc(hidden)]
pub mod dbsc_cases;
pub mod dbsc_sim;
mod fixture;
mod macros;
#[doc(hidden)]
pub mod refresh_cases;
mod wrappers;

use std::sync::Arc;

#[doc(hidden)]
pub use cases::{not_before as not_before_cases, patch as patch_cases};

pub use fixture::Fixture;
pub use wrappers::{CountingStore, Counts, FailingStore};

use crate::policy::Deadlines;
use crate::record::{ClientMeta, SessionRecord};
use crate::refresh::RefreshStore;
use crate::store::Store;
use crate::time::{Clock, SystemClock, Timestamp};
use crate::token::SessionToken;

/// Runs every store conformance case against `store`, in order, printing
/// each name. [`store_conformance!`](crate::store_conformance) runs the
/// same cases as one test each.
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

/// Runs every refresh-token conformance case, in order. `sessions` and
/// `refresh` are normally the same backend object.
/// [`refresh_conformance!`](crate::refresh_conformance) runs the same
/// cases as one test each.
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
/// single-use challenges under concurrent consumers, bound cookies, expiry),
/// in order. [`dbsc_conformance!`](crate::dbsc_conformance) runs the same
/// cases as one test each.
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

/// The names of the store cases, in the order [`run_all`] runs them (the
/// names of the tests [`store_conformance!`](crate::store_conformance)
/// generates).
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
        ClientMeta::new(Some([203, 0, 113, 7].into()), Some("testkit/1.0".into())),
    )
    .unwrap();
    record
        .data
        .insert("k".into(), serde_json::json!({"n": 1, "s": "v"}));
    record.authenticated_at = user.map(|_| now);
    (token, record)
}

#[cfg(test)]
mod tests {
    /// The `pub async fn`s of a cases file: its cases (helpers are private).
    fn public_async_fns(source: &str) -> Vec<&str> {
        source
            .lines()
            .filter_map(|line| line.strip_prefix("pub async fn "))
            .filter_map(|rest| rest.split('(').next())
            .collect()
    }

    /// Case fns are public (the macros reach them from other crates), so
    /// the compiler no longer warns about one that no list names: a case
    /// written and never listed would never run. Every public async fn of
    /// a cases file must be in its suite's list.
    /// The sources of the store cases: every file of `testkit/cases/`,
    /// read from disk so that a new file cannot be left out.
    fn store_case_sources() -> Vec<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/testkit/cases");
        let mut sources: Vec<String> = std::fs::read_dir(dir)
            .expect("testkit/cases")
            .map(|entry| entry.expect("entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
            .map(|path| std::fs::read_to_string(path).expect("read"))
            .collect();
        sources.sort();
        sources
    }

    #[test]
    fn every_case_is_in_its_suites_list() {
        let store_sources = store_case_sources();
        let suites: [(Vec<&str>, Vec<&str>); 3] = [
            (
                super::cases::all().iter().map(|(name, _)| *name).collect(),
                store_sources.iter().map(String::as_str).collect(),
            ),
            (
                super::refresh_cases::all()
                    .iter()
                    .map(|(name, _)| *name)
                    .collect(),
                vec![include_str!("refresh_cases.rs")],
            ),
            (
                super::dbsc_cases::all()
                    .iter()
                    .map(|(name, _)| *name)
                    .collect(),
                vec![include_str!("dbsc_cases.rs")],
            ),
        ];
        for (listed, sources) in suites {
            let defined: Vec<&str> = sources.iter().flat_map(|s| public_async_fns(s)).collect();
            for name in &defined {
                assert!(listed.contains(name), "case {name} is in no list");
            }
            assert_eq!(defined.len(), listed.len(), "{listed:?}");
        }
    }
}
