//! The write path behind [`RedisStore`]'s `Store` methods: the
//! compare-and-set, index maintenance, sign-in admission under the
//! per-user cap, rotation and `modify`, each a script or a short pipeline
//! (see the crate docs for the key layout and the ordering arguments).

use std::borrow::Cow;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use fred::bytes::Bytes;
use fred::interfaces::{HashesInterface, KeysInterface, SortedSetsInterface};
use fred::types::Value;
use futures_util::future::join_all;
use tessera::ended::{Ended, Revocation};
use tessera::error::StoreError;
use tessera::policy::{SessionCap, SessionLimitAction};
use tessera::record::{SessionHandle, SessionRecord};
use tessera::store::{Capped, CasOutcome, Modify, ModifyFn};
use tessera::time::Timestamp;
use tessera::token::TokenHash;

use crate::error::map_err;
use crate::inner::{Stripe, Written};
use crate::{
    Cas, MODIFY_ATTEMPTS, MODIFY_STRIPES, RedisStore, Update, array, backoff, codec, int, ms,
    parse_hash_field, random_generation, unexpected,
};

/// What a session key holds.
pub(crate) enum Stored {
    /// No key.
    Nothing,
    /// The encoded record.
    Record(Bytes),
    /// A tombstone, `<absolute deadline ms>,<reason>`.
    Tombstone(Bytes),
}

impl RedisStore {
    /// The compare-and-set of the write path (the `CAS` script): writes
    /// `value` if the stored value is still exactly `expected`.
    pub(crate) async fn cas(
        &self,
        hash: &TokenHash,
        expected: Bytes,
        value: Bytes,
        expire_at: Timestamp,
    ) -> Result<Cas, StoreError> {
        let v = self
            .eval_values(
                &self.inner.scripts.cas,
                self.session_key(hash),
                vec![
                    Value::from(expected),
                    Value::from(value),
                    Value::from(expire_at.as_millis()),
                ],
            )
            .await?;
        match v {
            Value::Integer(0) => Ok(Cas::Missing),
            Value::Integer(2) => Ok(Cas::Applied),
            stored @ (Value::Bytes(_) | Value::String(_)) => stored
                .into_bytes()
                .map(Cas::Conflict)
                .ok_or_else(|| unexpected("compare-and-set")),
            _ => Err(unexpected("compare-and-set")),
        }
    }

    /// Forgets the stripe's memory if it belongs to `chain`, whose write
    /// just failed (see [`Written::chain`]).
    pub(crate) async fn forget_chain(&self, stripe: &tokio::sync::Mutex<Stripe>, chain: u64) {
        let mut guard = stripe.lock().await;
        if guard.last.as_ref().is_some_and(|w| w.chain == chain) {
            guard.last = None;
        }
    }

    /// The stored record of a session and its exact stored bytes: one
    /// `GET`.
    pub(crate) async fn get_stored(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<(SessionRecord, Bytes)>, StoreError> {
        match self.get_value(hash).await? {
            Some(raw) => Ok(Some((codec::decode(hash, &raw)?, raw))),
            None => Ok(None),
        }
    }

    /// The encoded record of a session: one `GET` (see
    /// [`RedisStore::session_value`]).
    pub(crate) async fn get_value(&self, hash: &TokenHash) -> Result<Option<Bytes>, StoreError> {
        Ok(match self.session_value(hash).await? {
            Stored::Record(value) => Some(value),
            Stored::Tombstone(_) | Stored::Nothing => None,
        })
    }

    /// What a session key holds: one `GET` (boxed: see
    /// [`RedisStore::eval`]). A key of the layout before string keys (a
    /// hash: `GET` answers `WRONGTYPE`) costs one more round trip, an
    /// `HMGET` of its fields `c` (the record) and `t` (the tombstone); such
    /// keys become strings at their session's next write and are gone by
    /// its absolute deadline.
    pub(crate) async fn session_value(&self, hash: &TokenHash) -> Result<Stored, StoreError> {
        let get = self.inner.client.get::<Value, _>(self.session_key(hash));
        match Box::pin(get).await {
            Ok(v) => Ok(match v.into_bytes() {
                Some(value) => match value.strip_prefix(b"t") {
                    Some(tombstone) => Stored::Tombstone(value.slice_ref(tombstone)),
                    None => Stored::Record(value),
                },
                None => Stored::Nothing,
            }),
            Err(e) if e.details().starts_with("WRONGTYPE") => {
                let hmget = self
                    .inner
                    .client
                    .hmget::<Vec<Value>, _, _>(self.session_key(hash), vec!["c", "t"]);
                let mut fields = Box::pin(hmget).await.map_err(map_err)?.into_iter();
                let record = fields.next().and_then(Value::into_bytes);
                let tombstone = fields.next().and_then(Value::into_bytes);
                Ok(match (record, tombstone) {
                    (Some(value), _) => Stored::Record(value),
                    (None, Some(tombstone)) => Stored::Tombstone(tombstone),
                    (None, None) => Stored::Nothing,
                })
            }
            Err(e) => Err(map_err(e)),
        }
    }

    pub(crate) async fn create_session_key(
        &self,
        record: &SessionRecord,
    ) -> Result<bool, StoreError> {
        let value = codec::encode(record)?;
        let v = self
            .eval_values(
                &self.inner.scripts.create,
                self.session_key(&record.hash),
                vec![
                    Value::from(Bytes::from(value)),
                    Value::from(ms(record.deadlines.next())),
                ],
            )
            .await?;
        Ok(int(&v)? == 1)
    }

    pub(crate) async fn user_add(
        &self,
        user_id: &str,
        handle: &SessionHandle,
        absolute: Timestamp,
    ) -> Result<(), StoreError> {
        self.eval(
            &self.inner.scripts.user_add,
            self.user_key(user_id),
            vec![handle.as_str().to_owned(), ms(absolute)],
        )
        .await
        .map(drop)
    }

    pub(crate) async fn update_inner(
        &self,
        expected_version: u64,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<Update, StoreError> {
        let value = codec::encode(record)?;
        let v = self
            .eval_values(
                &self.inner.scripts.update,
                self.session_key(&record.hash),
                vec![
                    Value::from(ms(now)),
                    Value::from(expected_version.to_string()),
                    Value::from(Bytes::from(value)),
                    Value::from(ms(record.deadlines.next())),
                ],
            )
            .await?;
        let items = array(v)?;
        let code = items.first().map(int).transpose()?;
        let out = match code {
            Some(0) => Update::Missing,
            Some(1) => Update::Conflict,
            Some(2) => {
                let old_absolute = items
                    .get(1)
                    .and_then(Value::as_string)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(i64::MAX);
                Update::Applied { old_absolute }
            }
            Some(3) => {
                return Err(StoreError::backend(
                    "update must not change a session's user or handle",
                ));
            }
            Some(4) => {
                return Err(StoreError::Corrupt(
                    "stored session header does not parse".into(),
                ));
            }
            _ => return Err(unexpected("update")),
        };
        if let Update::Applied { old_absolute } = out {
            // The indexes must live as long as the session: when the
            // absolute deadline moved later, extend them (rare: only
            // re-authentication moves it).
            if record.deadlines.absolute.as_millis() > old_absolute {
                self.extend_indexes(record).await?;
            }
        }
        Ok(out)
    }

    pub(crate) async fn extend_indexes(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.eval(
            &self.inner.scripts.extend,
            self.handle_key(&record.handle),
            vec![ms(record.deadlines.absolute)],
        )
        .await?;
        if let Some(user) = &record.user_id {
            self.user_add(user, &record.handle, record.deadlines.absolute)
                .await?;
        }
        Ok(())
    }

    /// Deletes a session key if it matches; returns its (handle, user).
    pub(crate) async fn delete_if(
        &self,
        hash: &TokenHash,
        handle: Option<&SessionHandle>,
        owner: Option<&str>,
        why: Option<Ended>,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let key = self.session_key(hash);
        let v = self
            .eval(
                &self.inner.scripts.delete_if,
                key,
                vec![
                    handle.map(|h| h.as_str().to_owned()).unwrap_or_default(),
                    if owner.is_some() { "1" } else { "0" }.to_owned(),
                    owner.unwrap_or_default().to_owned(),
                    String::new(),
                    why.map(Ended::to_stored).unwrap_or_default(),
                ],
            )
            .await?;
        let items = array(v)?;
        if items.first().map(int).transpose()? != Some(1) {
            return Ok(None);
        }
        let handle = items
            .get(1)
            .and_then(Value::as_string)
            .ok_or_else(|| unexpected("delete"))?;
        let user = items.get(2).and_then(Value::as_string);
        Ok(Some((handle, user)))
    }

    /// Forgets hashes under a handle (by their field names: see
    /// [`RedisStore::hash_fields`]); when none remain, drops the handle
    /// from the user's index. Best-effort housekeeping: readers tolerate
    /// stale entries.
    pub(crate) async fn forget(
        &self,
        handle: &str,
        hashes: Vec<String>,
        user: Option<&str>,
    ) -> Result<(), StoreError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let key = format!("{}h:{{{handle}}}", self.inner.prefix);
        let remaining = int(&self.eval(&self.inner.scripts.forget, key, hashes).await?)?;
        if remaining == 0 {
            if let Some(user) = user {
                let zrem = |key| {
                    fred::interfaces::SortedSetsInterface::zrem::<i64, _, _>(
                        &self.inner.client,
                        key,
                        handle.to_owned(),
                    )
                };
                futures_util::try_join!(
                    zrem(self.user_key(user)),
                    zrem(self.legacy_user_key(user))
                )
                .map_err(map_err)?;
            }
        }
        Ok(())
    }

    /// Revokes every session registered under a handle (owned by `owner`
    /// when given). Bumps the handle's generation first, so that a rotation
    /// in flight aborts (see the README).
    pub(crate) async fn revoke_handle(
        &self,
        handle: &str,
        owner: Option<&str>,
        why: Option<Ended>,
    ) -> Result<u64, StoreError> {
        let generation = random_generation()?;
        let key = format!("{}h:{{{handle}}}", self.inner.prefix);
        let listed = array(
            self.eval(&self.inner.scripts.revoke, key, vec![generation])
                .await?,
        )?;
        // Field names (either spelling) and the hashes they name.
        let hashes: Vec<(String, TokenHash)> = listed
            .iter()
            .filter_map(Value::as_string)
            .filter_map(|f| parse_hash_field(&f).map(|h| (f, h)))
            .collect();
        let parsed = SessionHandle::parse(handle);
        let results = join_all(
            hashes
                .iter()
                .map(|(_, h)| self.delete_if(h, parsed.as_ref(), owner, why)),
        )
        .await;
        let mut deleted = 0u64;
        let mut gone = Vec::new();
        let mut user = None;
        for ((field, hash), result) in hashes.iter().zip(results) {
            if let Some((_, u)) = result? {
                deleted += 1;
                user = user.or(u);
                gone.push(field.clone());
            } else if self.get_value(hash).await?.is_none() {
                // Expired or never created (an aborted rotation): forget it.
                gone.push(field.clone());
            }
        }
        // One more look at the handle. A rotation whose PENDING ran after
        // REVOKE listed the hashes read the new generation, so its FINISH
        // cannot notice this revocation; if it then took the old key before
        // the deletes above could, its new key survived them. But PENDING
        // (registering the new hash) precedes its TAKE, which preceded the
        // failed delete of the old key above: the new hash is listed by now.
        // A rotation that comes to TAKE after those deletes finds nothing.
        let again: Vec<String> = self
            .inner
            .client
            .hkeys(format!("{}h:{{{handle}}}", self.inner.prefix))
            .await
            .map_err(map_err)?;
        for field in again
            .iter()
            .filter(|f| !hashes.iter().any(|(l, _)| l == *f))
        {
            let Some(hash) = parse_hash_field(field) else {
                continue;
            };
            if let Some((_, u)) = self.delete_if(&hash, parsed.as_ref(), owner, why).await? {
                deleted += 1;
                user = user.or(u);
                gone.push(field.clone());
            }
        }
        self.forget(handle, gone, user.as_deref().or(owner)).await?;
        Ok(deleted)
    }

    /// The live records registered under a handle.
    pub(crate) async fn records_of_handle(
        &self,
        handle: &str,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let key = format!("{}h:{{{handle}}}", self.inner.prefix);
        let fields: Vec<String> = self.inner.client.hkeys(key).await.map_err(map_err)?;
        let hashes = fields
            .iter()
            .filter(|f| f.as_str() != "g")
            .map(|f| {
                parse_hash_field(f)
                    .ok_or_else(|| StoreError::Corrupt("handle lists a bad hash".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let loaded = join_all(hashes.iter().map(|h| self.get_value(h))).await;
        let mut out = Vec::new();
        for (hash, value) in hashes.iter().zip(loaded) {
            if let Some(value) = value? {
                out.push(codec::decode(hash, &value)?);
            }
        }
        Ok(out)
    }

    /// The body of [`Store::create_capped`] once the handle is claimed:
    /// admit into the user index (the linearization point), revoke what
    /// the admission evicted, create the session key, and check that no
    /// later admission evicted the new handle before its key existed (its
    /// revocation would have found nothing to delete).
    pub(crate) async fn admit_and_create(
        &self,
        record: &SessionRecord,
        user: &str,
        cap: SessionCap,
    ) -> Result<Capped, StoreError> {
        let action = match cap.action {
            SessionLimitAction::EvictOldest => "evict",
            SessionLimitAction::RefuseNew => "refuse",
        };
        let user_key = self.user_key(user);
        let mut args = vec![
            record.handle.as_str().to_owned(),
            ms(record.deadlines.absolute),
            cap.max.max(1).to_string(),
            action.to_owned(),
        ];
        // Sessions indexed by the earlier layout count under the cap: the
        // script adds them to this index before it counts.
        for (member, score) in self.legacy_members(user).await? {
            args.extend([score, member]);
        }
        let admitted = array(
            self.eval(&self.inner.scripts.user_admit, user_key.clone(), args)
                .await?,
        )?;
        if admitted.first().map(int).transpose()? != Some(1) {
            return Ok(Capped::Refused);
        }
        let evicted: Vec<String> = admitted
            .iter()
            .skip(1)
            .filter_map(Value::as_string)
            .collect();
        let why = Some(Ended::Revoked(Revocation::SessionLimit));
        for handle in &evicted {
            self.revoke_handle(handle, Some(user), why).await?;
        }
        if !self.create_session_key(record).await? {
            return Err(StoreError::Duplicate);
        }
        let still: Option<f64> = self
            .inner
            .client
            .zscore(user_key, record.handle.as_str())
            .await
            .map_err(map_err)?;
        if still.is_none() {
            // A racing admission evicted this handle first: end the
            // session as that eviction meant to.
            if self
                .delete_if(&record.hash, Some(&record.handle), Some(user), why)
                .await?
                .is_some()
            {
                let fields = Self::hash_fields(&record.hash);
                self.forget(record.handle.as_str(), fields, Some(user))
                    .await?;
            }
        }
        let evicted = evicted
            .iter()
            .map(|h| {
                SessionHandle::parse(h)
                    .ok_or_else(|| StoreError::Corrupt("user index lists a bad handle".into()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Capped::Created { evicted })
    }

    /// The handles of a user's index, with those of the user's index in
    /// the earlier layout (read concurrently, one round trip; both pruned
    /// by the server clock), each once.
    pub(crate) async fn user_handles(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let script = &self.inner.scripts.user_list;
        let (current, legacy) = futures_util::try_join!(
            self.eval(script, self.user_key(user_id), Vec::new()),
            self.eval(script, self.legacy_user_key(user_id), Vec::new()),
        )?;
        let mut out: Vec<String> = array(current)?
            .iter()
            .filter_map(Value::as_string)
            .collect();
        for handle in array(legacy)?.iter().filter_map(Value::as_string) {
            if !out.contains(&handle) {
                out.push(handle);
            }
        }
        Ok(out)
    }

    /// The members of a user's index in the earlier layout, with their
    /// scores (absolute deadlines, as Redis prints them): nothing once
    /// that key has expired.
    pub(crate) async fn legacy_members(
        &self,
        user_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let zrange = self.inner.client.zrange::<Vec<Value>, _, _, _>(
            self.legacy_user_key(user_id),
            0,
            -1,
            None,
            false,
            None,
            true,
        );
        let flat = Box::pin(zrange).await.map_err(map_err)?;
        Ok(flat
            .chunks_exact(2)
            .filter_map(|pair| match pair {
                [member, score] => Some((member.as_string()?, score.as_string()?)),
                _ => None,
            })
            .collect())
    }

    /// Best-effort removal of a key a failed rotation created.
    pub(crate) async fn discard_pending(&self, new: &SessionRecord) {
        let key = self.session_key(&new.hash);
        if let Err(e) = self.inner.client.del::<i64, _>(key).await {
            tracing::warn!(
                session = %new.hash.fingerprint(),
                error = %e,
                "could not remove the new key of a failed rotation; it expires at its deadline and its token was never issued"
            );
        }
        let _ = self
            .inner
            .client
            .hdel::<i64, _, _>(self.handle_key(&new.handle), Self::hash_field(&new.hash))
            .await;
    }

    pub(crate) async fn rotate_inner(
        &self,
        old: &TokenHash,
        expected_version: u64,
        new: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        // 1. Register the new hash under the handle (so a revocation that
        //    starts from now on sees it) and read the revocation generation.
        let pending = self.eval(
            &self.inner.scripts.pending,
            self.handle_key(&new.handle),
            vec![Self::hash_field(&new.hash), ms(new.deadlines.absolute)],
        );
        let generation = match &new.user_id {
            Some(user) => {
                let (g, added) = tokio::join!(
                    pending,
                    self.user_add(user, &new.handle, new.deadlines.absolute)
                );
                added?;
                g?
            }
            None => pending.await?,
        };
        let generation = generation.as_string().unwrap_or_default();
        // 2. Create the new key. Its token has not been issued to anyone
        //    yet, so it working a moment early is unobservable.
        match self.create_session_key(new).await {
            Ok(true) => {}
            Ok(false) => {
                let _ = self
                    .inner
                    .client
                    .hdel::<i64, _, _>(self.handle_key(&new.handle), Self::hash_field(&new.hash))
                    .await;
                return Err(StoreError::Duplicate);
            }
            Err(e) => {
                self.discard_pending(new).await;
                return Err(e);
            }
        }
        // 3. Compare-and-delete the old key: the linearization point. From
        //    here on the old token, and for a sign-in the old handle (whose
        //    handle record now lists only a deleted key), find nothing.
        let taken = self
            .eval(
                &self.inner.scripts.take,
                self.session_key(old),
                vec![
                    ms(now),
                    expected_version.to_string(),
                    new.handle.as_str().to_owned(),
                ],
            )
            .await
            .and_then(array)
            .and_then(|items| Ok((items.first().map(int).transpose()?, items)));
        let (items, outcome) = match taken {
            Ok((Some(2 | 4), items)) => (items, None),
            Ok((Some(0), _)) => (Vec::new(), Some(Ok(CasOutcome::Missing))),
            Ok((Some(1), _)) => (Vec::new(), Some(Ok(CasOutcome::Conflict))),
            Ok(_) => (Vec::new(), Some(Err(unexpected("rotate")))),
            Err(e) => (Vec::new(), Some(Err(e))),
        };
        if let Some(outcome) = outcome {
            self.discard_pending(new).await;
            return outcome;
        }
        // A sign-in: the session left its old handle. Forget the old key
        // there and drop the handle from the old user's index. Only
        // housekeeping (readers skip keys that are gone; the handle record
        // expires at its absolute deadline), so a failure is logged.
        if let Some(old_handle) = items.get(1).and_then(Value::as_string) {
            let old_user = items.get(2).and_then(Value::as_string);
            if let Err(e) = self
                .forget(&old_handle, Self::hash_fields(old), old_user.as_deref())
                .await
            {
                tracing::debug!(error = %e, "index cleanup after a sign-in failed");
            }
        }
        // 4. If the handle was revoked since step 1, the revocation may have
        //    listed the hashes before the new key existed: delete it here.
        let finished = self
            .eval(
                &self.inner.scripts.finish,
                self.handle_key(&new.handle),
                [vec![generation], Self::hash_fields(old)].concat(),
            )
            .await
            .and_then(|v| int(&v));
        match finished {
            Ok(1) => Ok(CasOutcome::Applied),
            Ok(_) => {
                self.discard_pending(new).await;
                Ok(CasOutcome::Missing)
            }
            Err(e) => {
                // Unknown whether a revocation ran: fail closed.
                self.discard_pending(new).await;
                Err(e)
            }
        }
    }

    /// The read-modify-write loop. With `seed` (a record the caller loaded
    /// in this request) the first attempt is the compare-and-set itself, no
    /// read; a conflict hands back the latest record for the next attempt.
    ///
    /// Every compare-and-set is computed from a base record that was
    /// checked valid at `now` here, and the `CAS` script writes only if the
    /// stored record is that base (same version, deadlines, handle and
    /// user): so nothing expired is written and no update is lost.
    pub(crate) async fn modify_inner(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        f: ModifyFn<'_>,
        seed: Option<&SessionRecord>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let stripe = self
            .inner
            .modify_locks
            .get(usize::from(hash.as_bytes()[0]) % MODIFY_STRIPES)
            .ok_or_else(|| unexpected("modify"))?;
        // The latest record known from the caller or from Redis. When it
        // came from Redis, `known_raw` holds its exact stored bytes: the
        // compare-and-set compares whole values (see `CAS`), and an expired
        // record, or `Keep`, is then the final answer (a caller's copy may
        // be older than the store).
        let (mut known, mut known_raw): (Cow<'_, SessionRecord>, Option<Bytes>) = match seed {
            Some(record) => (Cow::Borrowed(record), None),
            None => match self.get_stored(hash).await? {
                Some((record, raw)) => (Cow::Owned(record), Some(raw)),
                None => return Ok(None),
            },
        };
        // Cleared when the stripe's memory must not be the base (it looked
        // expired, or `f` kept the record: both need the stored record).
        let mut use_memory = true;
        let mut conflicts = 0u32;
        loop {
            let mut guard = stripe.lock().await;
            let remembered = match guard.last.as_ref() {
                Some(w) if use_memory && w.hash == *hash && w.version > known.version => {
                    let record = codec::decode(hash, &w.value)?;
                    record
                        .is_valid_at(now)
                        .then(|| (record, w.chain, w.value.clone()))
                }
                _ => None,
            };
            let (current, chain) = match &remembered {
                Some((record, chain, _)) => (record, *chain),
                None => {
                    guard.chains = guard.chains.wrapping_add(1);
                    (&*known, guard.chains)
                }
            };
            let final_base = known_raw.is_some() && remembered.is_none();
            let mut next = current.clone();
            let reread = if !current.is_valid_at(now) {
                if final_base {
                    return Ok(None);
                }
                // The request's copy looks expired, but another request may
                // have moved the idle deadline: read the stored record.
                true
            } else if f(&mut next) == Modify::Keep {
                if final_base {
                    // Nothing written: the record as stored.
                    return Ok(Some(known.into_owned()));
                }
                // Keep reports the record *as stored*: the request's copy
                // (or this process's memory) may differ, so read and decide
                // again.
                true
            } else {
                false
            };
            if reread {
                drop(guard);
                let Some((record, raw)) = self.get_stored(hash).await? else {
                    return Ok(None);
                };
                (known, known_raw) = (Cow::Owned(record), Some(raw));
                use_memory = false;
                continue;
            }
            next.version = current.version.saturating_add(1);
            next.hash = *hash;
            next.handle = current.handle.clone();
            next.user_id.clone_from(&current.user_id);
            let value = Bytes::from(codec::encode(&next)?);
            // The exact bytes the write is computed from: what this
            // process sent for the remembered write, what Redis returned,
            // or (for the caller's copy) its encoding, which is how it was
            // stored; if that ever differs, the conflict hands back the
            // stored bytes and the next attempt uses them.
            let expected = match (&remembered, &known_raw) {
                (Some((_, _, sent)), _) => sent.clone(),
                (None, Some(raw)) => raw.clone(),
                (None, None) => Bytes::from(codec::encode(current)?),
            };
            let grew = next.deadlines.absolute > current.deadlines.absolute;
            let mut cas = pin!(self.cas(hash, expected, value.clone(), next.deadlines.next()));
            // Poll once while holding the stripe: that queues the command on
            // the connection, so the next write of this session, computed
            // from `next`, is sent after it (see `Stripe`).
            let first = poll_fn(|cx| Poll::Ready(cas.as_mut().poll(cx))).await;
            guard.last = Some(Written {
                hash: *hash,
                version: next.version,
                value,
                chain,
            });
            drop(guard);
            let outcome = match first {
                Poll::Ready(outcome) => outcome,
                Poll::Pending => cas.await,
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) => {
                    self.forget_chain(stripe, chain).await;
                    return Err(e);
                }
            };
            match outcome {
                Cas::Applied => {
                    // The indexes must live as long as the session: when the
                    // absolute deadline moved later, extend them (rare: only
                    // re-authentication moves it).
                    if grew {
                        self.extend_indexes(&next).await?;
                    }
                    return Ok(Some(next));
                }
                Cas::Missing => {
                    self.forget_chain(stripe, chain).await;
                    return Ok(None);
                }
                Cas::Conflict(latest) => {
                    self.forget_chain(stripe, chain).await;
                    // A stale copy (the caller's, or this process's memory)
                    // is not contention: retry at once the first time.
                    let stale_copy = seed.is_some() || remembered.is_some();
                    known = Cow::Owned(codec::decode(hash, &latest)?);
                    known_raw = Some(latest);
                    use_memory = true;
                    conflicts += 1;
                    if conflicts >= MODIFY_ATTEMPTS {
                        return Err(StoreError::Contention);
                    }
                    if conflicts > 1 || !stale_copy {
                        backoff(conflicts - 1).await;
                    }
                }
            }
        }
    }
}
