#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// Library and server code never panics on input or store errors: no
// unwrap()/expect() outside tests (the conformance kit allows them).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!("tessera-sql needs at least one of the features `sqlite`, `postgres`, `mysql`");

mod dbsc;
mod error;
#[cfg(feature = "postgres")]
mod invalidation;
#[cfg(feature = "mysql")]
mod mysql;
mod not_before;
mod options;
#[cfg(feature = "postgres")]
mod postgres;
mod refresh_row;
mod row;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
mod sweeper;
mod tombstone;

pub use crate::error::UnsupportedUrl;
#[cfg(feature = "postgres")]
pub use crate::invalidation::PgChannel;
#[cfg(feature = "mysql")]
pub use crate::mysql::MySqlStore;
pub use crate::options::SqlOptions;
#[cfg(feature = "postgres")]
pub use crate::postgres::PgStore;
#[cfg(feature = "sqlite")]
pub use crate::sqlite::SqliteStore;
pub use crate::store::SqlStore;
pub use crate::sweeper::{
    DEFAULT_MAX_BATCHES, DEFAULT_PACE, SweepStats, Sweeper, SweeperConfig, spawn_sweeper,
    sweep_once, sweep_paced,
};
