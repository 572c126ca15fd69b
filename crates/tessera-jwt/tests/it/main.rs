//! Integration tests of tessera-jwt through its public API, with real key
//! files in temporary directories and a manual clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

mod common;
mod jwks;
mod keystore;
mod props;
mod session;
mod verify;
