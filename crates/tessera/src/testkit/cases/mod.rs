//! The store conformance cases. Each takes the store under test.
//!
//! One file per concept of the [`Store`] contract; the list below (one
//! macro) names every case, and the macros and [`run_all`](super::run_all)
//! reach each case as `testkit::cases::<name>`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::record_at;
use crate::record::SessionRecord;
use crate::store::Store;
use crate::time::{Clock, SystemClock, Timestamp};
use crate::token::SessionToken;

mod caps;
mod delete_all;
mod ended;
mod modify;
// Public: `testkit::not_before_cases` and `testkit::patch_cases` name them.
pub mod not_before;
pub mod patch;
mod purge;
mod races;
mod records;
mod remember;
mod users;

pub use caps::*;
pub use delete_all::*;
pub use ended::*;
pub use modify::*;
pub use not_before::*;
pub use patch::*;
pub use purge::*;
pub use races::*;
pub use records::*;
pub use remember::*;
pub use users::*;

type Case = fn(Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// The one list of the store conformance cases, in the order they
/// run: calls back `$callback! { ($($args)*) [case, ...] }` with their
/// names. [`run_all`](super::run_all) and
/// [`store_conformance!`](crate::store_conformance) both expand it, so a case
/// cannot be added to one and forgotten in the other.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_cases {
    (($($callback:tt)*) $($args:tt)*) => {
        $($callback)*! { ($($args)*) [
            ping_answers,
            created_record_loads_identically,
            duplicate_create_is_refused,
            unknown_hash_loads_nothing,
            update_with_expected_version_applies,
            update_with_stale_version_conflicts,
            update_of_deleted_record_is_missing_and_does_not_resurrect,
            update_of_expired_record_is_missing,
            rotate_moves_the_record_atomically,
            rotate_with_stale_version_changes_nothing,
            rotate_of_missing_or_expired_changes_nothing,
            delete_reports_existence,
            delete_by_handle_respects_owner,
            list_by_user_returns_live_sessions_oldest_first,
            delete_by_user_can_keep_one,
            user_index_follows_rotation,
            sign_in_rotation_retires_the_old_handle,
            ended_sessions_leave_a_tombstone_saying_why,
            a_refused_token_reports_why_its_session_ended,
            purge_removes_expired_records_in_bounded_batches,
            purge_of_an_idle_expired_session_leaves_expired_idle,
            modify_applies_and_bumps_version,
            modify_keep_writes_nothing,
            modify_of_missing_or_expired_is_none,
            concurrent_increments_lose_nothing,
            concurrent_changes_to_different_keys_both_survive,
            racing_rotations_leave_one_token,
            revoke_all_racing_rotation_leaves_no_live_session,
            capped_creation_evicts_the_oldest_with_a_tombstone,
            capped_creation_refuses_at_the_cap_and_writes_nothing,
            racing_capped_creations_leave_exactly_the_cap,
            racing_refused_creations_admit_exactly_the_cap,
            remember_class_survives_round_trips_touches_and_rotation,
            unconfigured_remember_class_is_refused_and_stores_nothing,
            patch_sets_removes_and_increments_in_one_write,
            patch_refusals_write_nothing,
            patch_of_missing_or_expired_is_missing_and_resurrects_nothing,
            patch_activity_moves_the_idle_deadline_by_class,
            concurrent_patch_increments_lose_nothing,
            user_not_before_refuses_that_users_older_sessions_only,
            not_before_never_moves_backward,
            // Sets the store-wide switch (in the past; see the case).
            global_not_before_refuses_everyone,
            // Last: it empties the store (within its prefix or database).
            delete_all_ends_every_session_and_the_store_keeps_working,
        ] }
    };
}

/// Every case with its name, in order.
pub(super) fn all() -> Vec<(&'static str, Case)> {
    macro_rules! table {
        (() [$($name:ident),* $(,)?]) => {
            vec![$((stringify!($name), (|s| Box::pin($name(s))) as Case)),*]
        };
    }
    crate::__store_cases!((table))
}

/// The real current time (cases run against backends with server-side
/// TTLs).
fn now() -> Timestamp {
    SystemClock.now()
}

const HOUR: i64 = 3_600_000;

async fn create(store: &Arc<dyn Store>, user: Option<&str>) -> (SessionToken, SessionRecord) {
    let (token, record) = record_at(user, now(), HOUR);
    store.create(&record).await.expect("create");
    (token, record)
}

/// Loads and requires a record valid at `at`.
async fn live(store: &Arc<dyn Store>, record: &SessionRecord, at: Timestamp) -> bool {
    match store.load(&record.hash).await.expect("load") {
        Some(r) => r.is_valid_at(at),
        None => false,
    }
}
