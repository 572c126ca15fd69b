#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod audit;
pub mod cache;
pub mod cookie;
pub mod csrf;
pub mod dbsc;
pub mod ended;
pub mod error;
pub mod guard;
pub mod manager;

/// Security rationale of every default, with sources.
#[doc = include_str!("../docs/manual.md")]
pub mod manual {}

pub mod not_before;
pub mod policy;
mod random;
pub mod record;
pub mod refresh;
pub mod session;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod time;
pub mod token;
pub mod user_id;

pub use crate::ended::{Ended, Revocation};
pub use crate::error::{SessionError, StoreError};
pub use crate::manager::{Access, Issued, Renewal, SessionManager};
pub use crate::policy::{ExpiryReason, SessionPolicy};
pub use crate::session::Session;
pub use crate::store::Store;
