//! The storage contract every backend implements.
//!
//! A [`Store`] keeps [`SessionRecord`](crate::record::SessionRecord)s keyed by
//! [`TokenHash`](crate::token::TokenHash), with an index by user and by
//! public handle. It is deliberately small and explicit about atomicity,
//! because that is where session libraries lose writes and leave fixation
//! holes:
//!
//! - [`Store::update`] is a **compare-and-set** on `version`: it writes only
//!   if the stored version is the one the caller read. A late write cannot
//!   overwrite a newer one, and cannot resurrect a deleted or expired
//!   session.
//! - [`Store::modify`] is a read-modify-write of one record; backends that
//!   can lock a row (SQL) or a map shard (memory) do it without retries, and
//!   the default implementation is a compare-and-set loop.
//! - [`Store::patch`] applies typed changes ([`Patch`]: set, remove,
//!   increment, compare-and-set of one key) to the latest stored record in
//!   one store operation, so the common writes need no read first.
//! - [`Store::rotate`] replaces a record's key (and, for a sign-in, its
//!   handle) in one atomic step: there is no moment when both or neither
//!   token works, and on failure the old session is intact.
//!
//! Expired records: stores may keep them until [`Store::purge_expired`] (or a
//! TTL) removes them, and [`Store::load`] may return them, so the caller can
//! tell the user *why* a session ended; the [`crate::manager`] never serves
//! one. Writes (`update`, `modify`, `rotate`) must treat a record expired at
//! `now` as missing.
//!
//! Every implementation runs the conformance suite in `tessera::testkit`
//! (feature `testkit`) unchanged.
//!
//! # Writing a store
//!
//! Start from [`ReferenceStore`]: the smallest store that keeps every rule
//! above, a few hash maps behind one mutex, each method commented with the
//! rule it keeps, with the session and refresh-token conformance suites
//! run on it. It shows which methods a store must write and which it can
//! leave to the trait.
//! [`MemoryStore`] keeps the same rules in a compact layout built for
//! a million sessions, which makes it the harder one to learn from.

mod contract;
#[cfg(test)]
mod forwarding;
mod memory;
mod outcome;
mod patch;
mod reference;

pub use contract::{Store, cas_loop, patch_by_modify};
pub use memory::MemoryStore;
pub use outcome::{Capped, CasOutcome, Modify, ModifyFn};
pub use patch::{Activity, Patch, PatchOp, PatchOutcome, PatchRefusal};
pub use reference::ReferenceStore;
