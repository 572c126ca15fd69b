//! The macros that turn each conformance suite into one test per case.
//!
//! Each public macro hands its fixture to the suite's list of cases
//! (`__store_cases!` and its siblings, next to the cases), which calls
//! [`__conformance_tests!`](crate::__conformance_tests) back with the
//! names. `run_all` and its siblings expand the same lists.

/// Generates the store conformance suite as tests: one
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` per case,
/// named after the case, in the module where it is invoked.
///
/// The argument is a fixture expression: an `async` block or any other
/// expression whose value is a future (a call to an `async fn`). Each test
/// evaluates it afresh and awaits it; what it yields implements
/// [`testkit::Fixture`](crate::testkit::Fixture): `Arc<S>`, or `(Arc<S>, G)`
/// with a guard kept alive until the case ends. `S` must implement
/// [`Store`](crate::store::Store). The last case empties the store, and the
/// tests run in parallel: each fixture must give the test a store of its
/// own (a fresh database, a unique Redis key prefix).
///
/// Invoke it inside a module named for what it tests, so that a case runs
/// by name, here `cargo test -p my-store --test it
/// my_store::conformance::rotate_moves_the_record_atomically`. The calling
/// crate needs `tokio` with the `macros` and `rt-multi-thread` features
/// among its (dev-)dependencies.
///
/// ```
/// // tests/it/my_store.rs (a MemoryStore stands in for the store).
/// mod conformance {
///     use std::sync::Arc;
///
///     use tessera::store::MemoryStore;
///
///     tessera::store_conformance!(async { Arc::new(MemoryStore::new()) });
/// }
/// # fn main() {}
/// ```
///
/// With a guard, here a directory deleted after the test:
///
/// ```no_run
/// mod conformance {
///     use std::sync::Arc;
///
///     use tessera::store::MemoryStore;
///
///     struct TempDir; // tempfile::TempDir, in a real crate
///
///     async fn fixture() -> (Arc<MemoryStore>, TempDir) {
///         let dir = TempDir;
///         (Arc::new(MemoryStore::new()), dir)
///     }
///
///     tessera::store_conformance!(fixture());
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! store_conformance {
    ($fixture:expr $(,)?) => {
        $crate::__store_cases! { ($crate::__conformance_tests) store $fixture }
    };
}

/// Generates the refresh-token conformance suite as tests: one
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` per case,
/// named after the case, in the module where it is invoked.
///
/// The fixture expression is as for
/// [`store_conformance!`](crate::store_conformance); its store must
/// implement both [`Store`](crate::store::Store) and
/// [`RefreshStore`](crate::refresh::RefreshStore): the cases use the one
/// object as both. The last case empties the store. Run one case with,
/// e.g., `cargo test -p my-store --test it
/// my_store::refresh_conformance::a_refresh_token_rotates_exactly_once`.
///
/// ```
/// mod refresh_conformance {
///     use std::sync::Arc;
///
///     use tessera::store::MemoryStore;
///
///     tessera::refresh_conformance!(async { Arc::new(MemoryStore::new()) });
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! refresh_conformance {
    ($fixture:expr $(,)?) => {
        $crate::__refresh_cases! { ($crate::__conformance_tests) refresh $fixture }
    };
}

/// Generates the DBSC conformance suite as tests: one
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` per case,
/// named after the case, in the module where it is invoked.
///
/// The fixture expression is as for
/// [`store_conformance!`](crate::store_conformance); its store must
/// implement [`DbscStore`](crate::dbsc::DbscStore). Run one case with,
/// e.g., `cargo test -p my-store --test it
/// my_store::dbsc_conformance::a_challenge_is_consumed_once`.
///
/// ```
/// mod dbsc_conformance {
///     use std::sync::Arc;
///
///     use tessera::dbsc::MemoryDbscStore;
///
///     tessera::dbsc_conformance!(async { Arc::new(MemoryDbscStore::new()) });
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! dbsc_conformance {
    ($fixture:expr $(,)?) => {
        $crate::__dbsc_cases! { ($crate::__conformance_tests) dbsc $fixture }
    };
}

/// The callback of the case lists: one test per name, for the suite named
/// first.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ((store $fixture:expr) [$($name:ident),* $(,)?]) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                // Lives to the end of the test, panic or not.
                let fixture = $fixture.await;
                let store: ::std::sync::Arc<dyn $crate::store::Store> =
                    $crate::testkit::Fixture::store(&fixture);
                $crate::testkit::cases::$name(store).await;
            }
        )*
    };
    ((refresh $fixture:expr) [$($name:ident),* $(,)?]) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture = $fixture.await;
                let store = $crate::testkit::Fixture::store(&fixture);
                let sessions: ::std::sync::Arc<dyn $crate::store::Store> = store.clone();
                let refresh: ::std::sync::Arc<dyn $crate::refresh::RefreshStore> = store;
                $crate::testkit::refresh_cases::$name((sessions, refresh)).await;
            }
        )*
    };
    ((dbsc $fixture:expr) [$($name:ident),* $(,)?]) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture = $fixture.await;
                let store: ::std::sync::Arc<dyn $crate::dbsc::DbscStore> =
                    $crate::testkit::Fixture::store(&fixture);
                $crate::testkit::dbsc_cases::$name(store).await;
            }
        )*
    };
}
