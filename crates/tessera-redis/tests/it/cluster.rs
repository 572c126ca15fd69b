//! The conformance suites, unchanged, against a real 3-master Redis Cluster: one test
//! per case, each on a store under a key prefix of its own (the last case
//! of a suite empties its store).

use std::sync::Arc;

use tessera_redis::RedisStore;

use crate::common;

/// A store under a fresh random key prefix.
async fn fixture() -> Arc<RedisStore> {
    Arc::new(common::cluster("conf").await)
}

/// The store conformance suite, one test per case:
/// `cargo test -p tessera-redis --test it cluster::conformance::<case>`.
mod conformance {
    tessera::store_conformance!(super::fixture());
}

/// The refresh-token conformance suite, one test per case.
mod refresh_conformance {
    tessera::refresh_conformance!(super::fixture());
}

/// The DBSC conformance suite, one test per case.
mod dbsc_conformance {
    tessera::dbsc_conformance!(super::fixture());
}
