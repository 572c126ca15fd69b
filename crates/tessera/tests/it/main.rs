//! The core's integration tests, one binary: the session cache, the
//! lifecycle through the manager, property tests and refresh tokens.
//!
//! Test code unwraps: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod cache;
mod lifecycle;
mod properties;
mod refresh;
