//! Kill switches: a per-user and a global "not before" time.
//!
//! Deleting sessions one by one is slow on a large store and, while it
//! runs, the sessions not yet reached still work; a sign-in racing the
//! deletion can also create a session just after it. A **not-before** time
//! closes both gaps: the store refuses, at every load, any session created
//! before the not-before that applies to it (its user's, or the global
//! one), in the same store operation as the load. Setting one is O(1)
//! whatever the store size, and takes effect for every instance at once.
//! ASVS 5.0 V7.4.3 (terminate all sessions after a password change or an
//! account disable) and V7.4.5 (an administrator can terminate all
//! sessions).
//!
//! **Which time is compared.** A session's [`SessionRecord::created_at`]:
//! the moment of its sign-in (a sign-in on an existing session resets it,
//! see [`crate::Renewal::Login`]). Not `authenticated_at`: a step-up
//! re-authentication moves that forward, and a step-up that verified the
//! *old* password while a password change committed would otherwise lift
//! its session over the new not-before. Anonymous sessions have a
//! `created_at` too, so the global switch refuses them as well.
//!
//! **The rule.** A session is refused when `created_at < at`. Values only
//! move forward: setting an earlier time than the one in force changes
//! nothing, so setting is idempotent and concurrent setters converge on
//! the latest ([`Store::raise_not_before`](crate::store::Store::raise_not_before)).
//! A refused session answers `reason: "revoked"` with the cause stored
//! beside the time ([`Revocation`]), reported by
//! [`Store::ended`](crate::store::Store::ended).
//!
//! **Clocks.** The not-before and `created_at` come from the clocks of the
//! instances that set them. Instances whose clocks disagree by `d` can let
//! a session created within `d` of the switch survive it (or refuse one
//! created just after it): keep instance clocks synchronised (NTP keeps
//! them within milliseconds).

use crate::ended::Revocation;
use crate::record::SessionRecord;
use crate::time::Timestamp;

/// Which sessions a not-before applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The sessions of one user.
    User(&'a str),
    /// Every session in the store (every user, and anonymous sessions).
    Everyone,
}

/// A not-before time and why it was set.
///
/// ```
/// use tessera::not_before::NotBefore;
/// use tessera::time::Timestamp;
/// use tessera::Revocation;
/// let old = NotBefore::new(Timestamp::from_millis(10), Revocation::Admin);
/// let new = NotBefore::new(Timestamp::from_millis(20), Revocation::PasswordChanged);
/// assert_eq!(old.max(new), new);
/// assert_eq!(new.max(old), new);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotBefore {
    /// Sessions created before this instant are refused.
    pub at: Timestamp,
    /// The cause reported for a refused session.
    pub why: Revocation,
}

impl NotBefore {
    /// A not-before at `at` for cause `why`.
    pub const fn new(at: Timestamp, why: Revocation) -> Self {
        Self { at, why }
    }

    /// The later of the two; on a tie, `self` (the one already in force),
    /// so that setting the same time again changes nothing.
    #[must_use]
    pub fn max(self, other: Self) -> Self {
        if other.at > self.at { other } else { self }
    }

    /// True when this not-before refuses `record`.
    pub fn refuses(&self, record: &SessionRecord) -> bool {
        record.created_at < self.at
    }
}

/// Raises `current` to `new` (values never move backward). Stores that
/// keep the value themselves use this rule; see [`NotBefore::max`].
pub fn raised(current: Option<NotBefore>, new: NotBefore) -> NotBefore {
    current.map_or(new, |c| c.max(new))
}

/// Why `record` is refused by the not-befores in force (its user's and the
/// global one), or `None` when neither applies. When both refuse it, the
/// later one gives the cause. Every store calls this on what it read in
/// the same operation as the record, so the rule lives in one place.
///
/// ```
/// use tessera::not_before::{NotBefore, refusal};
/// use tessera::record::{ClientMeta, SessionRecord};
/// use tessera::time::Timestamp;
/// use tessera::{Revocation, SessionPolicy};
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let at = Timestamp::from_millis(1_000);
/// let hash = tessera::token::SessionToken::generate()?.hash();
/// let record = SessionRecord::new(hash, Some("alice".into()), at,
///     SessionPolicy::default().deadlines_at(at), ClientMeta::default())?;
/// let later = NotBefore::new(Timestamp::from_millis(1_001), Revocation::PasswordChanged);
/// assert_eq!(refusal(&record, Some(later), None), Some(Revocation::PasswordChanged));
/// let same = NotBefore::new(at, Revocation::Admin);
/// assert_eq!(refusal(&record, Some(same), Some(same)), None);
/// # Ok(()) }
/// ```
pub fn refusal(
    record: &SessionRecord,
    user: Option<NotBefore>,
    everyone: Option<NotBefore>,
) -> Option<Revocation> {
    // A user's not-before applies only to that user's sessions; stores
    // read it by the record's own user, but an anonymous record never
    // has one.
    let user = user.filter(|_| record.user_id.is_some());
    let applies = |nb: &Option<NotBefore>| nb.filter(|nb| nb.refuses(record));
    match (applies(&user), applies(&everyone)) {
        (Some(u), Some(e)) => Some(e.max(u).why),
        (Some(nb), None) | (None, Some(nb)) => Some(nb.why),
        (None, None) => None,
    }
}
