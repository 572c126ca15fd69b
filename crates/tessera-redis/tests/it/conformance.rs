//! The core and refresh-token conformance suites, unchanged, against a real Redis and a real
//! 3-master Redis Cluster.

use crate::common;

use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_redis_passes_the_conformance_suite() {
    let store = Arc::new(common::standalone("conf").await);
    tessera::testkit::run_all(store.clone()).await;
    tessera::testkit::run_refresh_all(store.clone(), store.clone()).await;
    tessera::testkit::run_dbsc_all(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_passes_the_conformance_suite() {
    let store = Arc::new(common::cluster("conf").await);
    tessera::testkit::run_all(store.clone()).await;
    tessera::testkit::run_refresh_all(store.clone(), store.clone()).await;
    tessera::testkit::run_dbsc_all(store).await;
}
