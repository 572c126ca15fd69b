//! The generic read-modify-write behind the provided [`Store::modify`] and
//! [`Store::patch`], public so that a store overriding either for some
//! cases can fall back to them.

use std::time::Duration;

use super::{CasOutcome, Modify, ModifyFn, Patch, PatchOutcome, Store};
use crate::error::StoreError;
use crate::record::SessionRecord;
use crate::time::Timestamp;
use crate::token::TokenHash;

/// [`Store::patch`] through [`Store::modify_loaded`] / [`Store::modify`]:
/// the default implementation, public so that a store overriding `patch`
/// for some cases can fall back to it.
///
/// # Errors
///
/// As [`Store::modify`].
pub async fn patch_by_modify<S: Store + ?Sized>(
    store: &S,
    hash: &TokenHash,
    base: Option<&SessionRecord>,
    patch: &Patch,
    now: Timestamp,
) -> Result<PatchOutcome, StoreError> {
    // Set by the attempt whose result counts: the closure runs once per
    // attempt, each time on the latest record.
    let refused = std::sync::Mutex::new(None);
    let expired = std::sync::atomic::AtomicBool::new(false);
    let f = |record: &mut SessionRecord| {
        let gone = !patch.is_live(record, now);
        expired.store(gone, std::sync::atomic::Ordering::Relaxed);
        if gone {
            return Modify::Keep;
        }
        let outcome = patch.apply(record, now);
        let keep = outcome.is_err();
        *refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = outcome.err();
        if keep { Modify::Keep } else { Modify::Write }
    };
    let stored = match base {
        Some(base) if base.hash == *hash => store.modify_loaded(base, now, &f).await?,
        _ => store.modify(hash, now, &f).await?,
    };
    let Some(record) = stored else {
        return Ok(PatchOutcome::Missing);
    };
    if expired.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(PatchOutcome::Missing);
    }
    let why = refused
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    Ok(match why {
        Some(why) => PatchOutcome::Refused { why, record },
        None => PatchOutcome::Applied(record),
    })
}

/// Attempts before [`cas_loop`] reports [`StoreError::Contention`].
const CAS_ATTEMPTS: u32 = 64;

/// The generic read-modify-write loop behind [`Store::modify`], public so
/// that store implementations overriding `modify` for some cases can fall
/// back to it.
///
/// # Errors
///
/// [`StoreError::Contention`] after repeated conflicts; backend errors.
pub async fn cas_loop<S: Store + ?Sized>(
    store: &S,
    hash: &TokenHash,
    now: Timestamp,
    f: ModifyFn<'_>,
) -> Result<Option<SessionRecord>, StoreError> {
    for attempt in 0..CAS_ATTEMPTS {
        let Some(current) = store.load(hash).await? else {
            return Ok(None);
        };
        if !current.is_valid_at(now) {
            return Ok(None);
        }
        let mut next = current.clone();
        if f(&mut next) == Modify::Keep {
            // The record as stored, not the closure's scratch copy: a
            // caller that kept must not see changes that were not written
            // (a refused patch may have applied some of its operations).
            return Ok(Some(current));
        }
        // The identity of a session never changes in a write.
        next.hash = current.hash;
        next.handle = current.handle;
        next.user_id = current.user_id;
        next.version = current.version.saturating_add(1);
        match store.update(current.version, &next, now).await? {
            CasOutcome::Applied => return Ok(Some(next)),
            CasOutcome::Missing => return Ok(None),
            CasOutcome::Conflict => backoff(attempt).await,
        }
    }
    Err(StoreError::Contention)
}

/// Sleeps a short, jittered, growing time so contending writers spread out.
async fn backoff(attempt: u32) {
    let mut b = [0u8; 1];
    // Jitter only; a failed RNG just means no jitter.
    let _ = crate::random::fill(&mut b);
    let base_us = 50u64 << attempt.min(6);
    let [r] = b;
    let jitter = u64::from(r) * base_us / 255;
    tokio::time::sleep(Duration::from_micros(base_us + jitter)).await;
}
