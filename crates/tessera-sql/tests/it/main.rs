//! The SQL stores against real databases, one binary: SQLite files,
//! PostgreSQL and MySQL/MariaDB servers (never skipped), and the session
//! cache over `LISTEN/NOTIFY`.
//!
//! Test code unwraps: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod mysql;
mod postgres;
mod postgres_cache;
mod sqlite;
