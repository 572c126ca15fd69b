//! Typed changes a store applies to the stored record itself: the write
//! path of [`Store::patch`](super::Store::patch).
//!
//! A read-modify-write closure ([`Store::modify`](super::Store::modify))
//! can only run where the code is, so a remote store needs a read and a
//! compare-and-set. The common session writes do not need a closure: they
//! set and remove keys, add to a counter, or replace one key's value if it
//! still holds what the caller saw. Expressed as data, a store applies them
//! to its latest record in one step (a Lua script, a locked row, the memory
//! store's lock): one round trip, and no update is lost because nothing is
//! computed from a stale copy.
//!
//! ```
//! use tessera::store::{Patch, PatchOp};
//! use tessera::time::Timestamp;
//! # let (_, mut record) = tessera::testkit::sample_record(None);
//!
//! let patch = Patch::new(vec![
//!     PatchOp::Set { key: "theme".into(), value: "dark".into() },
//!     PatchOp::Increment { key: "visits".into(), by: 1 },
//! ]);
//! let now: Timestamp = record.created_at;
//! assert_eq!(patch.apply(&mut record, now), Ok(()));
//! assert_eq!(record.data["visits"], 1);
//! ```

use std::time::Duration;

use serde_json::Value;

use crate::policy::{SessionClass, SessionPolicy};
use crate::record::{DataChanges, SessionRecord};
use crate::time::Timestamp;

/// One change of a [`Patch`], applied in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PatchOp {
    /// `key = value`.
    Set {
        /// The data key.
        key: String,
        /// Its new value.
        value: Value,
    },
    /// Removes `key` (nothing happens if it is absent).
    Remove {
        /// The data key.
        key: String,
    },
    /// Adds `by` to the integer under `key` (an absent key counts as 0).
    /// A value that is not an integer in `i64`, or an overflow, refuses the
    /// whole patch with [`PatchRefusal::NotAnInteger`].
    Increment {
        /// The data key.
        key: String,
        /// The amount, possibly negative.
        by: i64,
    },
    /// Sets `key` to `new` (removes it for `None`) only if it currently
    /// holds exactly `expected` (`None`: absent); otherwise the whole patch
    /// is refused with [`PatchRefusal::Expectation`] and the caller gets the
    /// stored record to retry from.
    CompareAndSet {
        /// The data key.
        key: String,
        /// The value the caller saw.
        expected: Option<Value>,
        /// The value to store.
        new: Option<Value>,
    },
}

/// Why a store applied none of a [`Patch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatchRefusal {
    /// A [`PatchOp::CompareAndSet`] found another value.
    Expectation,
    /// A [`PatchOp::Increment`] found a non-integer or would overflow.
    NotAnInteger,
    /// The data would be larger than [`Patch::max_data_bytes`].
    TooLarge,
}

/// What [`Store::patch`](super::Store::patch) did.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum PatchOutcome {
    /// Written; the record as stored now (version bumped).
    Applied(SessionRecord),
    /// Nothing written; the record as stored.
    Refused {
        /// Why.
        why: PatchRefusal,
        /// The stored record, unchanged.
        record: SessionRecord,
    },
    /// No live record at `now` (deleted, expired, never there): nothing
    /// was written, nothing resurrected.
    Missing,
}

/// How a patch moves the idle deadline: "activity at `now`" with the idle
/// timeout of the record's lifetime class (the store learns the class only
/// when it reads the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// Idle timeout of [`SessionClass::Default`] records.
    pub idle: Duration,
    /// Idle timeout of [`SessionClass::Remember`] records.
    pub remember_idle: Duration,
}

/// A list of [`PatchOp`]s plus what the write means for the record's
/// deadlines. Build one with [`Patch::new`] or [`Patch::for_policy`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Patch {
    /// The changes, in order.
    pub ops: Vec<PatchOp>,
    /// `Some`: the write counts as activity (last seen = `now`, idle
    /// deadline moved as [`SessionPolicy::idle_deadline_for`] does).
    pub activity: Option<Activity>,
    /// `Some(d)`: a remember-class record is held to `created_at + d`
    /// (the policy no longer offers the class; see
    /// [`SessionManager::load_hash`](crate::SessionManager::load_hash)),
    /// before its validity at `now` is checked.
    pub remember_cap: Option<Duration>,
    /// Refuse the patch ([`PatchRefusal::TooLarge`]) when the data,
    /// encoded as JSON, would be longer than this.
    pub max_data_bytes: Option<usize>,
}

impl Patch {
    /// A patch of `ops` with no activity and no limits.
    pub fn new(ops: Vec<PatchOp>) -> Self {
        Self {
            ops,
            ..Self::default()
        }
    }

    /// A patch of `ops` under `policy`: its data limit, its rule for a
    /// lifetime class it no longer offers, and (`activity`) its idle
    /// timeouts.
    pub fn for_policy(policy: &SessionPolicy, ops: Vec<PatchOp>, activity: bool) -> Self {
        Self {
            ops,
            activity: activity.then(|| Activity {
                idle: policy.lifetime(SessionClass::Default).idle_timeout,
                remember_idle: policy.lifetime(SessionClass::Remember).idle_timeout,
            }),
            remember_cap: (!policy.offers(SessionClass::Remember))
                .then_some(policy.absolute_timeout),
            max_data_bytes: policy.max_data_bytes,
        }
    }

    /// The ops that [`DataChanges`] stand for.
    pub fn ops_from_changes(changes: &DataChanges) -> Vec<PatchOp> {
        changes
            .iter()
            .map(|(key, value)| match value {
                Some(value) => PatchOp::Set {
                    key: key.to_owned(),
                    value: value.clone(),
                },
                None => PatchOp::Remove {
                    key: key.to_owned(),
                },
            })
            .collect()
    }

    /// The deadlines `record` has under this patch's class rule (the
    /// stored ones, or shorter).
    pub fn cap_deadlines(&self, record: &mut SessionRecord) {
        if let (Some(cap), SessionClass::Remember) = (self.remember_cap, record.class) {
            let held = record.created_at + cap;
            record.deadlines.absolute = record.deadlines.absolute.min(held);
            record.deadlines.idle = record.deadlines.idle.min(record.deadlines.absolute);
        }
    }

    /// Whether `record` is valid at `now` under this patch's class rule:
    /// what a store checks before applying the patch.
    pub fn is_live(&self, record: &SessionRecord, now: Timestamp) -> bool {
        let mut deadlines = record.deadlines;
        if let (Some(cap), SessionClass::Remember) = (self.remember_cap, record.class) {
            deadlines.absolute = deadlines.absolute.min(record.created_at + cap);
            deadlines.idle = deadlines.idle.min(deadlines.absolute);
        }
        deadlines.expired_at(now).is_none()
    }

    /// Applies the patch to `record` at `now`, as a store does to its
    /// latest record. The caller checked (after [`Patch::cap_deadlines`])
    /// that the record is valid at `now`. On a refusal `record` may be
    /// partly changed: throw it away. Does not bump the version.
    ///
    /// # Errors
    ///
    /// The [`PatchRefusal`]; nothing must be written then.
    pub fn apply(&self, record: &mut SessionRecord, now: Timestamp) -> Result<(), PatchRefusal> {
        self.cap_deadlines(record);
        for op in &self.ops {
            apply_op(op, &mut record.data)?;
        }
        if let Some(max) = self.max_data_bytes {
            let fits = serde_json::to_vec(&record.data).is_ok_and(|e| e.len() <= max);
            if !fits && !self.ops.is_empty() {
                return Err(PatchRefusal::TooLarge);
            }
        }
        if let Some(activity) = self.activity {
            let idle = match record.class {
                SessionClass::Remember => activity.remember_idle,
                SessionClass::Default => activity.idle,
            };
            record.last_seen_at = now;
            record.deadlines.idle = (now + idle).min(record.deadlines.absolute);
        }
        Ok(())
    }
}

fn apply_op(op: &PatchOp, data: &mut crate::record::Data) -> Result<(), PatchRefusal> {
    match op {
        PatchOp::Set { key, value } => {
            data.insert(key.clone(), value.clone());
        }
        PatchOp::Remove { key } => {
            data.remove(key);
        }
        PatchOp::Increment { key, by } => {
            let current = match data.get(key) {
                None => 0,
                Some(v) => v.as_i64().ok_or(PatchRefusal::NotAnInteger)?,
            };
            let next = current.checked_add(*by).ok_or(PatchRefusal::NotAnInteger)?;
            data.insert(key.clone(), next.into());
        }
        PatchOp::CompareAndSet { key, expected, new } => {
            if data.get(key) != expected.as_ref() {
                return Err(PatchRefusal::Expectation);
            }
            match new {
                Some(v) => {
                    data.insert(key.clone(), v.clone());
                }
                None => {
                    data.remove(key);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::*;

    fn record() -> SessionRecord {
        crate::testkit::sample_record(None).1
    }

    #[test]
    fn increment_counts_from_zero_and_refuses_non_integers() {
        let mut r = record();
        let now = r.created_at;
        let inc = Patch::new(vec![PatchOp::Increment {
            key: "n".into(),
            by: 2,
        }]);
        inc.apply(&mut r, now).unwrap();
        inc.apply(&mut r, now).unwrap();
        assert_eq!(r.data["n"], 4);
        r.data.insert("n".into(), json!(1.5));
        assert_eq!(inc.apply(&mut r, now), Err(PatchRefusal::NotAnInteger));
        r.data.insert("n".into(), json!(i64::MAX));
        assert_eq!(inc.apply(&mut r, now), Err(PatchRefusal::NotAnInteger));
    }

    #[test]
    fn compare_and_set_needs_the_expected_value() {
        let mut r = record();
        let now = r.created_at;
        let cas = |expected: Option<Value>| {
            Patch::new(vec![PatchOp::CompareAndSet {
                key: "c".into(),
                expected,
                new: Some(json!("b")),
            }])
        };
        assert_eq!(
            cas(Some(json!("a"))).apply(&mut r, now),
            Err(PatchRefusal::Expectation)
        );
        cas(None).apply(&mut r, now).unwrap();
        assert_eq!(r.data["c"], "b");
    }

    #[test]
    fn activity_moves_the_idle_deadline_within_the_absolute_one() {
        let mut r = record();
        let now = r.created_at + Duration::from_secs(10);
        let patch = Patch {
            activity: Some(Activity {
                idle: Duration::from_secs(7200),
                remember_idle: Duration::from_secs(1),
            }),
            ..Patch::default()
        };
        patch.apply(&mut r, now).unwrap();
        assert_eq!(r.last_seen_at, now);
        assert_eq!(r.deadlines.idle, r.deadlines.absolute);
    }
}
