//! The Redis store against a real Redis and a real 3-master Redis
//! Cluster, one binary. The command-counting tests (`commandstats`) count
//! with the servers' own `INFO commandstats`, which counts every client:
//! each starts a Redis and a Cluster of its own, so the tests running
//! beside them on the shared instances do not change their counts.
//!
//! Test code unwraps: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod behaviour;
mod cache;
mod cluster;
mod commandstats;
mod common;
mod footprint;
mod refresh;
mod standalone;
mod upgrade;
mod writes;
