//! The Redis store against a real Redis and a real 3-master Redis
//! Cluster, one binary. The command-counting tests (`patch_path`,
//! `read_path`) are in `tests/commandstats`, a second binary that runs
//! them one at a time: `INFO commandstats` counts every client, so no other
//! test may run beside them.
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
#[path = "../common/mod.rs"]
mod common;
mod footprint;
mod refresh;
mod standalone;
mod upgrade;
mod writes;
