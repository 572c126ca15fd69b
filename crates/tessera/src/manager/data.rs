//! Session data changes: `modify`, compare-and-set patches and
//! read-modify-write of one value, each one store operation or a CAS loop
//! over the record the request loaded.

use crate::error::SessionError;
use crate::policy::SessionClass;
use crate::record::{Data, DataChanges, SessionRecord};
use crate::store::{Modify, Patch, PatchOp, PatchOutcome, PatchRefusal};
use crate::time::Timestamp;
use crate::token::TokenHash;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Access, Base, SessionManager, set_failure};

impl SessionManager {
    /// Applies `changes` to the latest stored data (key by key, so
    /// concurrent changes to other keys are kept) and, for
    /// [`Access::Activity`], moves the idle deadline.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`] if the session is gone or expired (it is
    /// never resurrected); store errors.
    pub async fn modify(
        &self,
        hash: &TokenHash,
        changes: &DataChanges,
        access: Access,
    ) -> Result<SessionRecord, SessionError> {
        self.modify_base(Base::Hash(hash), changes, access).await
    }

    /// [`SessionManager::modify`] for a record this request already loaded:
    /// the write is a compare-and-set on the loaded version, without
    /// reading the record again first; if another write came in between,
    /// the store re-reads and merges (see [`Store::modify_loaded`](crate::store::Store::modify_loaded)), so no
    /// change is lost and an ended session is never resurrected.
    ///
    /// ```
    /// use tessera::{Access, SessionManager};
    /// use tessera::record::DataChanges;
    /// use tessera::store::MemoryStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let issued = manager.create(None, Default::default(), Default::default()).await?;
    /// let mut changes = DataChanges::default();
    /// changes.set("theme", "dark".into());
    /// let record = manager.modify_loaded(&issued.record, &changes, Access::Activity).await?;
    /// assert_eq!(record.version, 2);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SessionManager::modify`].
    pub async fn modify_loaded(
        &self,
        record: &SessionRecord,
        changes: &DataChanges,
        access: Access,
    ) -> Result<SessionRecord, SessionError> {
        self.modify_base(Base::Loaded(record), changes, access)
            .await
    }

    /// Compare-and-set of data keys, for clients that cannot run a closure
    /// inside [`SessionManager::update_value`] (the HTTP API's clients):
    /// `changes` are applied only if every key of `expected` currently holds
    /// exactly that value (JSON `null` means "absent"). Checked and written
    /// in one store compare-and-set, so two clients that both read 41 cannot
    /// both write 42: one gets `Ok((false, latest))` and retries from the
    /// latest value. Counts as activity when applied.
    ///
    /// Returns whether the changes were applied, and the record as stored.
    ///
    /// ```
    /// use tessera::SessionManager;
    /// use tessera::record::{Data, DataChanges};
    /// use tessera::store::MemoryStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let issued = manager.create(None, Default::default(), Default::default()).await?;
    /// let hash = issued.record.hash;
    /// let mut expected = Data::new();
    /// expected.insert("n".into(), serde_json::Value::Null); // absent so far
    /// let mut changes = DataChanges::default();
    /// changes.set("n", 1.into());
    /// assert!(manager.modify_expecting(&hash, &expected, &changes).await?.0);
    /// // The same expectation again no longer holds: nothing is written.
    /// let (applied, latest) = manager.modify_expecting(&hash, &expected, &changes).await?;
    /// assert!(!applied);
    /// assert_eq!(latest.data["n"], 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`] if the session is gone or expired; store
    /// errors.
    pub async fn modify_expecting(
        &self,
        hash: &TokenHash,
        expected: &Data,
        changes: &DataChanges,
    ) -> Result<(bool, SessionRecord), SessionError> {
        self.modify_expecting_base(Base::Hash(hash), expected, changes)
            .await
    }

    /// [`SessionManager::modify_expecting`] for a record this request
    /// already loaded: the expectation is checked and the changes written in
    /// one compare-and-set on the loaded version, without reading the record
    /// again first. If another write came in between, the store re-reads the
    /// latest record and the expectation is checked again on it, so a stale
    /// load can never make a compare-and-set succeed.
    ///
    /// ```
    /// use tessera::SessionManager;
    /// use tessera::record::{Data, DataChanges};
    /// use tessera::store::MemoryStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let issued = manager.create(None, Default::default(), Default::default()).await?;
    /// let mut expected = Data::new();
    /// expected.insert("n".into(), serde_json::Value::Null);
    /// let mut changes = DataChanges::default();
    /// changes.set("n", 1.into());
    /// let (applied, written) = manager
    ///     .modify_expecting_loaded(&issued.record, &expected, &changes)
    ///     .await?;
    /// assert!(applied);
    /// // The loaded record is now stale: the store re-reads, and the
    /// // expectation (n absent) no longer holds.
    /// let (applied, latest) = manager
    ///     .modify_expecting_loaded(&issued.record, &expected, &changes)
    ///     .await?;
    /// assert!(!applied);
    /// assert_eq!(latest.version, written.version);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SessionManager::modify_expecting`].
    pub async fn modify_expecting_loaded(
        &self,
        record: &SessionRecord,
        expected: &Data,
        changes: &DataChanges,
    ) -> Result<(bool, SessionRecord), SessionError> {
        self.modify_expecting_base(Base::Loaded(record), expected, changes)
            .await
    }

    pub(super) async fn modify_expecting_base(
        &self,
        base: Base<'_>,
        expected: &Data,
        changes: &DataChanges,
    ) -> Result<(bool, SessionRecord), SessionError> {
        let now = self.now();
        let policy = &self.inner.policy;
        // Set by the attempt whose expectation held; a later attempt (after
        // a version conflict) sets it again from the record it saw.
        let applied = AtomicBool::new(false);
        // Set by the attempt whose merged data is over the limit; that
        // attempt writes nothing.
        let too_large = AtomicBool::new(false);
        let apply = |record: &mut SessionRecord| {
            let holds = expected
                .iter()
                .all(|(key, want)| match record.data.get(key) {
                    Some(have) => have == want,
                    None => want.is_null(),
                });
            applied.store(holds, Ordering::Relaxed);
            too_large.store(false, Ordering::Relaxed);
            if !holds {
                return Modify::Keep;
            }
            changes.apply(&mut record.data);
            if !changes.is_empty() && !policy.data_fits(&record.data) {
                too_large.store(true, Ordering::Relaxed);
                return Modify::Keep;
            }
            record.last_seen_at = now;
            record.deadlines.idle =
                policy.idle_deadline_for(record.class, now, record.deadlines.absolute);
            Modify::Write
        };
        let record = self
            .store_modify(base, now, &apply)
            .await?
            .ok_or(SessionError::NotFound)?;
        if too_large.load(Ordering::Relaxed) {
            return Err(self.data_too_large());
        }
        Ok((applied.load(Ordering::Relaxed), record))
    }

    pub(super) async fn modify_base(
        &self,
        base: Base<'_>,
        changes: &DataChanges,
        access: Access,
    ) -> Result<SessionRecord, SessionError> {
        let now = self.now();
        let policy = &self.inner.policy;
        // Set by the attempt (the closure may run again on a newer record)
        // whose merged data is over the limit; that attempt writes nothing.
        let too_large = std::sync::atomic::AtomicBool::new(false);
        let apply = |record: &mut SessionRecord| {
            changes.apply(&mut record.data);
            let fits = changes.is_empty() || policy.data_fits(&record.data);
            too_large.store(!fits, std::sync::atomic::Ordering::Relaxed);
            if !fits {
                return Modify::Keep;
            }
            if access == Access::Activity {
                record.last_seen_at = now;
                record.deadlines.idle =
                    policy.idle_deadline_for(record.class, now, record.deadlines.absolute);
            }
            Modify::Write
        };
        let written = self.store_modify(base, now, &apply).await?;
        if too_large.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(self.data_too_large());
        }
        written.ok_or(SessionError::NotFound)
    }

    /// [`SessionError::Unsupported`] unless the policy offers `class`.
    pub(super) fn check_class(&self, class: SessionClass) -> Result<(), SessionError> {
        if self.inner.policy.offers(class) {
            Ok(())
        } else {
            Err(SessionError::Unsupported(
                "this lifetime class is not configured",
            ))
        }
    }

    pub(super) fn data_too_large(&self) -> SessionError {
        SessionError::DataTooLarge {
            limit: self.inner.policy.max_data_bytes.unwrap_or(usize::MAX),
        }
    }

    /// [`SessionError::DataTooLarge`] unless `data` fits the policy.
    pub(super) fn check_data_size(&self, data: &crate::record::Data) -> Result<(), SessionError> {
        if self.inner.policy.data_fits(data) {
            Ok(())
        } else {
            Err(self.data_too_large())
        }
    }

    pub(super) async fn store_modify(
        &self,
        base: Base<'_>,
        now: Timestamp,
        f: crate::store::ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, crate::error::StoreError> {
        match base {
            Base::Hash(hash) => self.inner.store.modify(hash, now, f).await,
            Base::Loaded(record) => self.inner.store.modify_loaded(record, now, f).await,
        }
    }

    /// Applies typed changes ([`PatchOp`]s) to the latest stored record in
    /// one store operation ([`Store::patch`](crate::store::Store::patch)): no read before the write on
    /// stores that apply it themselves, and no update lost to a concurrent
    /// write. With [`Access::Activity`] the idle deadline moves. `base` is
    /// the record this request loaded, if any (the first compare-and-set
    /// base of stores that cannot apply a patch in place).
    ///
    /// ```
    /// use tessera::{Access, SessionManager};
    /// use tessera::store::{MemoryStore, PatchOp, PatchOutcome};
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let issued = manager.create(None, Default::default(), Default::default()).await?;
    /// let ops = vec![PatchOp::Increment { key: "n".into(), by: 5 }];
    /// let PatchOutcome::Applied(record) =
    ///     manager.patch(&issued.record.hash, None, ops, Access::Activity).await?
    /// else { panic!("the session is live") };
    /// assert_eq!(record.data["n"], 5);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`] if no live session is stored under
    /// `hash`; [`SessionError::DataTooLarge`] if the data would exceed the
    /// policy's limit (nothing was written); store errors. Other refusals
    /// come back as [`PatchOutcome::Refused`].
    pub async fn patch(
        &self,
        hash: &TokenHash,
        base: Option<&SessionRecord>,
        ops: Vec<PatchOp>,
        access: Access,
    ) -> Result<PatchOutcome, SessionError> {
        let patch = Patch::for_policy(&self.inner.policy, ops, access == Access::Activity);
        match self
            .inner
            .store
            .patch(hash, base, &patch, self.now())
            .await?
        {
            PatchOutcome::Missing => Err(SessionError::NotFound),
            PatchOutcome::Refused {
                why: PatchRefusal::TooLarge,
                ..
            } => Err(self.data_too_large()),
            outcome => Ok(outcome),
        }
    }

    /// Atomic read-modify-write of one data key: `f` gets the current value
    /// (or `None`) and returns the new one. `f` may run more than once.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`], [`SessionError::Data`] if the stored
    /// value does not deserialize as `T`, store errors.
    pub async fn update_value<T, F>(
        &self,
        hash: &TokenHash,
        key: &str,
        f: F,
    ) -> Result<T, SessionError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send,
        F: Fn(Option<T>) -> T + Send + Sync,
    {
        Ok(self.update_value_base(Base::Hash(hash), key, f).await?.0)
    }

    /// [`SessionManager::update_value`] for a record this request already
    /// loaded: one compare-and-set on the loaded version instead of a read
    /// and a write; on a conflict the store re-reads the latest record and
    /// `f` runs again on it, so no increment is lost.
    ///
    /// ```
    /// use tessera::SessionManager;
    /// use tessera::store::MemoryStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let issued = manager.create(None, Default::default(), Default::default()).await?;
    /// let n = manager.update_value_loaded(&issued.record, "n", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
    /// assert_eq!(n, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SessionManager::update_value`].
    pub async fn update_value_loaded<T, F>(
        &self,
        record: &SessionRecord,
        key: &str,
        f: F,
    ) -> Result<T, SessionError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send,
        F: Fn(Option<T>) -> T + Send + Sync,
    {
        Ok(self
            .update_value_base(Base::Loaded(record), key, f)
            .await?
            .0)
    }

    /// [`SessionManager::update_value_loaded`], also returning the record as
    /// written (so the request's view has the new version and deadlines).
    pub(crate) async fn update_value_written<T, F>(
        &self,
        record: &SessionRecord,
        key: &str,
        f: F,
    ) -> Result<(T, SessionRecord), SessionError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send,
        F: Fn(Option<T>) -> T + Send + Sync,
    {
        self.update_value_base(Base::Loaded(record), key, f).await
    }

    pub(super) async fn update_value_base<T, F>(
        &self,
        base: Base<'_>,
        key: &str,
        f: F,
    ) -> Result<(T, SessionRecord), SessionError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send,
        F: Fn(Option<T>) -> T + Send + Sync,
    {
        let now = self.now();
        let policy = &self.inner.policy;
        let failure: std::sync::Mutex<Option<serde_json::Error>> = std::sync::Mutex::new(None);
        let apply = |record: &mut SessionRecord| {
            let current = match record.data.get(key).cloned().map(serde_json::from_value) {
                None => None,
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => {
                    set_failure(&failure, e);
                    return Modify::Keep;
                }
            };
            match serde_json::to_value(f(current)) {
                Ok(v) => {
                    record.data.insert(key.to_owned(), v);
                }
                Err(e) => {
                    set_failure(&failure, e);
                    return Modify::Keep;
                }
            }
            record.last_seen_at = now;
            record.deadlines.idle =
                policy.idle_deadline_for(record.class, now, record.deadlines.absolute);
            Modify::Write
        };
        let record = self
            .store_modify(base, now, &apply)
            .await?
            .ok_or(SessionError::NotFound)?;
        if let Some(e) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(SessionError::Data(e));
        }
        let value = record.data.get(key).cloned().unwrap_or_default();
        Ok((serde_json::from_value(value)?, record))
    }
}
