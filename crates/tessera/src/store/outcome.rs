//! What a store write reports: the small types the [`Store`](super::Store)
//! trait and every store share. A leaf module, so that the trait, the
//! stores and the generic fallbacks can all name them without importing
//! from one another in a circle.

use crate::record::{SessionHandle, SessionRecord};

/// Result of a compare-and-set write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum CasOutcome {
    /// The write happened.
    Applied,
    /// The stored version was not the expected one; nothing was written.
    Conflict,
    /// No live record under that key (deleted, expired or never there);
    /// nothing was written.
    Missing,
}

/// Result of [`Store::create_capped`](super::Store::create_capped).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Capped {
    /// The record was created; these sessions of the same user (oldest
    /// first) ended in the same step to make room.
    Created {
        /// Handles of the evicted sessions.
        evicted: Vec<SessionHandle>,
    },
    /// The user was at the cap and the action is
    /// [`SessionLimitAction::RefuseNew`](crate::policy::SessionLimitAction::RefuseNew): nothing was written.
    Refused,
}

/// What a [`Store::modify`](super::Store::modify) closure decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modify {
    /// Write the changed record (the store bumps the version).
    Write,
    /// Leave the stored record as it is.
    Keep,
}

/// The closure type of [`Store::modify`](super::Store::modify). It may be called more than once
/// (once per attempt), always with the latest stored record.
pub type ModifyFn<'a> = &'a (dyn Fn(&mut SessionRecord) -> Modify + Send + Sync);
