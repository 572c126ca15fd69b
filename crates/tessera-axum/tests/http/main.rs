//! HTTP-level tests of the session layer: a real server on a local port,
//! a real client, a manual clock, and store wrappers that count calls or
//! fail on demand.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

mod bearer;
mod concurrency;
mod cookies;
mod csrf;
mod dbsc;
mod failure;
mod lazy;
mod lifecycle;
mod metadata;
