#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// Library and server code never panics on input or store errors: no
// unwrap()/expect() outside tests (the conformance kit allows them).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod cache;
pub mod cookie;
pub mod csrf;
pub mod dbsc;
pub mod ended;
pub mod error;
pub mod guard;
pub mod manager;

/// Security rationale of every default, with sources: one chapter per
/// concern, each linking to the items it justifies.
#[doc = include_str!("../docs/manual/README.md")]
pub mod manual {
    #[doc = include_str!("../docs/manual/01-tokens.md")]
    pub mod tokens {}
    #[doc = include_str!("../docs/manual/02-hashed_at_rest.md")]
    pub mod hashed_at_rest {}
    #[doc = include_str!("../docs/manual/03-timeouts.md")]
    pub mod timeouts {}
    #[doc = include_str!("../docs/manual/04-touch.md")]
    pub mod touch {}
    #[doc = include_str!("../docs/manual/05-rotation.md")]
    pub mod rotation {}
    #[doc = include_str!("../docs/manual/06-cookie.md")]
    pub mod cookie {}
    #[doc = include_str!("../docs/manual/07-csrf.md")]
    pub mod csrf {}
    #[doc = include_str!("../docs/manual/08-concurrency.md")]
    pub mod concurrency {}
    #[doc = include_str!("../docs/manual/09-failure.md")]
    pub mod failure {}
}

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
