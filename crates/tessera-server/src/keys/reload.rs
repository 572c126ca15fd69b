//! Seeing a change made elsewhere: when the loaded version of the keys
//! (`keys::version`) is compared with the source, and the reload (see the
//! [module docs](super)).

use std::sync::atomic::Ordering;

use tessera_jwt::KeyStore;

use super::placement::Source;
use super::version::{Fingerprint, RECHECK_INTERVAL, Seen};
use super::{SigningKeys, build};

impl SigningKeys {
    pub(super) fn seen(&self) -> Seen {
        self.inner
            .loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .seen
    }

    /// Reloads the keys if their source changed since the last load (see
    /// the [module docs](super)). True when it reloaded.
    pub(super) async fn sync(&self) -> bool {
        self.inner
            .checked_at
            .store(self.inner.clock.now().as_millis(), Ordering::Relaxed);
        let reloaded = match &self.inner.source {
            Source::Memory => return false,
            Source::Dir(dir) => {
                let now = Fingerprint::of(dir);
                if now.is_none() || Seen::File(now) == self.seen() {
                    return false;
                }
                KeyStore::open(dir, self.inner.retention)
                    .map_err(|e| e.to_string())
                    .map(|store| (Seen::File(now), store.key_set().clone()))
            }
            Source::Shared(shared) => {
                let version = match shared.repo.version().await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "checking the shared signing keys failed; keeping the loaded keys");
                        return false;
                    }
                };
                // 0: the set was deleted from the store; keep what is
                // loaded rather than sign with nothing.
                if version == 0 || Seen::Version(version) == self.seen() {
                    return false;
                }
                match shared.load(self.inner.retention).await {
                    Ok(Some((version, keys))) => Ok((Seen::Version(version), keys)),
                    Ok(None) => return false,
                    Err(e) => Err(e),
                }
            }
        };
        let built = reloaded.and_then(|(seen, keys)| {
            build(
                &keys,
                seen,
                &self.inner.issuer_config,
                &self.inner.verifier_config,
                &self.inner.clock,
            )
            .map_err(|e| e.to_string())
        });
        match built {
            Ok(loaded) => {
                if let Some(key) = loaded.keys.current() {
                    tracing::info!(kid = %key.kid, alg = %key.algorithm, "signing keys reloaded");
                }
                *self.inner.loaded.write().unwrap_or_else(|e| e.into_inner()) = loaded;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "reloading the signing keys failed; keeping the loaded keys");
                false
            }
        }
    }

    /// [`sync`](Self::sync) if the last check is [`RECHECK_INTERVAL`] old
    /// (or in the future: a clock set back must not stop the checks).
    pub(super) async fn sync_if_due(&self) {
        let now = self.inner.clock.now().as_millis();
        let last = self.inner.checked_at.load(Ordering::Relaxed);
        let interval = i64::try_from(RECHECK_INTERVAL.as_millis()).unwrap_or(i64::MAX);
        let due = now < last || now.saturating_sub(last) >= interval;
        // One request of many arriving together does the check; the others
        // go on with the loaded keys, which are at most one interval old.
        if due
            && self
                .inner
                .checked_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sync().await;
        }
    }

    /// The check made for a token whose `kid` is not loaded. True when the
    /// token is worth verifying again: the keys were reloaded, or another
    /// request's check that began after this one arrived has finished
    /// (concurrent unknown `kid`s, forged or not, share one read).
    pub(super) async fn sync_for_unknown_kid(&self) -> bool {
        if matches!(self.inner.source, Source::Dir(_)) {
            // A `stat`: cheaper than any coordination.
            return self.sync().await;
        }
        let arrived = self.inner.unknown_kid_checks.load(Ordering::SeqCst);
        let mut done = self.inner.unknown_kid_done.lock().await;
        if *done > arrived {
            return true;
        }
        let number = self.inner.unknown_kid_checks.fetch_add(1, Ordering::SeqCst) + 1;
        let reloaded = self.sync().await;
        *done = number;
        reloaded
    }
}
