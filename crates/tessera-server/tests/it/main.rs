//! Integration tests: every test starts the real `tessera` binary on a free
//! port with a temporary SQLite file and talks HTTP to it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![allow(missing_docs, unreachable_pub)]

mod activity;
mod api;
mod backends;
mod browser;
mod cache;
mod cli;
mod common;
mod dbsc;
mod edge;
mod faults;
mod files;
mod forward;
mod hostile;
mod instances;
mod kill_switch;
mod nginx;
mod proxy;
mod remember;
mod requests;
mod session_cap;
mod shared_keys;
mod site;
mod startup;
mod tls_cluster;
mod tokens;
