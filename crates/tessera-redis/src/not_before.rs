//! The kill switches on Redis (see `tessera::not_before` and the README).
//!
//! Keys, none with a TTL (one per user ever switched off, plus one):
//!
//! - `<prefix>n:{all}` — a hash: the global not-before (`at`, `why`) and
//!   `users`, the latest per-user not-before ever set (a high-water mark).
//! - `<prefix>n:{<sha256(user id) hex>}` — a hash: the user's not-before
//!   (`at`, `why`). No script touches it with another key.
//!
//! A load reads the session and the global hash concurrently (fred
//! pipelines them: one round trip on a single Redis, two nodes answering
//! in parallel on a cluster). Only when the session was created before
//! `users` — some user's switch was set after it — does it read its
//! user's hash, a second round trip: a session key and a user key live in
//! different slots, and the user is known only after the record is read.
//!
//! Raising a user's not-before raises `users` **first**, then the user's
//! hash: if the second step fails, loads read the user's hash for nothing,
//! never skip it while it holds a time.

use std::sync::LazyLock;

use fred::interfaces::HashesInterface;
use fred::types::scripts::Script;
use tessera::ended::{Ended, Revocation};
use tessera::error::StoreError;
use tessera::not_before::{NotBefore, Scope, refusal};
use tessera::record::SessionRecord;
use tessera::time::Timestamp;

use crate::RedisStore;
use crate::error::map_err;

/// Raises one time field of a hash to `ARGV[3]` if it is later, and with
/// it the cause field (`ARGV[2]`, empty for none) to `ARGV[4]`. Returns the
/// fields in force as `"<at>,<why>"`. One key: atomic, and concurrent
/// raises leave the latest time.
const RAISE: &str = r"
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if cur == nil or tonumber(ARGV[3]) > cur then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], ARGV[2], ARGV[4]) end
end
local why = ''
if ARGV[2] ~= '' then why = redis.call('HGET', KEYS[1], ARGV[2]) or '' end
return (redis.call('HGET', KEYS[1], ARGV[1]) or '') .. ',' .. why
";

static RAISE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(RAISE));

/// The global hash as read beside a session.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Global {
    everyone: Option<NotBefore>,
    /// The latest per-user not-before ever set.
    users: Option<Timestamp>,
}

fn parse(at: Option<&str>, why: Option<&str>) -> Result<Option<NotBefore>, StoreError> {
    let (Some(at), Some(why)) = (at, why) else {
        return Ok(None);
    };
    let at: i64 = at
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("not-before time {at:?}")))?;
    let why = Revocation::from_code(why)
        .ok_or_else(|| StoreError::Corrupt(format!("not-before cause {why:?}")))?;
    Ok(Some(NotBefore::new(Timestamp::from_millis(at), why)))
}

impl RedisStore {
    pub(crate) fn global_not_before_key(&self) -> String {
        format!("{}n:{{all}}", self.inner.prefix)
    }

    /// Tagged with the SHA-256 of the user id in hex, as it always was
    /// (unchanged when the user index moved to a shorter tag: a switch set
    /// before an upgrade must still be found after it).
    pub(crate) fn user_not_before_key(&self, user_id: &str) -> String {
        format!("{}n:{{{}}}", self.inner.prefix, crate::user_hex(user_id))
    }

    /// One `HMGET` of the global hash.
    pub(crate) async fn global_not_before(&self) -> Result<Global, StoreError> {
        let hmget = self.inner.client.hmget::<Vec<Option<String>>, _, _>(
            self.global_not_before_key(),
            vec!["at", "why", "users"],
        );
        let fields = Box::pin(hmget).await.map_err(map_err)?;
        let field = |i: usize| fields.get(i).and_then(Option::as_deref);
        let users = match field(2) {
            Some(users) => Some(Timestamp::from_millis(users.parse().map_err(|_| {
                StoreError::Corrupt(format!("not-before high-water mark {users:?}"))
            })?)),
            None => None,
        };
        Ok(Global {
            everyone: parse(field(0), field(1))?,
            users,
        })
    }

    async fn user_not_before(&self, user_id: &str) -> Result<Option<NotBefore>, StoreError> {
        let hmget = self.inner.client.hmget::<Vec<Option<String>>, _, _>(
            self.user_not_before_key(user_id),
            vec!["at", "why"],
        );
        let fields = Box::pin(hmget).await.map_err(map_err)?;
        let field = |i: usize| fields.get(i).and_then(Option::as_deref);
        parse(field(0), field(1))
    }

    /// Why a not-before refuses `record`, given the global hash read with
    /// it; reads the user's hash only when a user switch may apply.
    pub(crate) async fn refusal(
        &self,
        record: &SessionRecord,
        global: Global,
    ) -> Result<Option<Revocation>, StoreError> {
        let user = match (&record.user_id, global.users) {
            (Some(user), Some(users)) if record.created_at < users => {
                self.user_not_before(user).await?
            }
            _ => None,
        };
        Ok(refusal(record, user, global.everyone))
    }

    /// `record` unless a not-before refuses it.
    pub(crate) async fn usable(
        &self,
        record: SessionRecord,
        global: Global,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .refusal(&record, global)
            .await?
            .is_none()
            .then_some(record))
    }

    /// `Ended::Revoked(cause)` for a stored record a not-before refuses.
    pub(crate) async fn refused(
        &self,
        record: &SessionRecord,
    ) -> Result<Option<Ended>, StoreError> {
        let global = self.global_not_before().await?;
        Ok(self.refusal(record, global).await?.map(Ended::Revoked))
    }

    /// Filters `records` of one user, reading the not-befores once.
    pub(crate) async fn usable_of_user(
        &self,
        user_id: &str,
        records: Vec<SessionRecord>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        if records.is_empty() {
            return Ok(records);
        }
        let (global, user) =
            futures_util::try_join!(self.global_not_before(), self.user_not_before(user_id))?;
        Ok(records
            .into_iter()
            .filter(|r| refusal(r, user, global.everyone).is_none())
            .collect())
    }

    async fn raise(
        &self,
        key: String,
        fields: (&str, &str),
        to: NotBefore,
    ) -> Result<(Option<i64>, String), StoreError> {
        let args = vec![
            fields.0.to_owned(),
            fields.1.to_owned(),
            to.at.as_millis().to_string(),
            to.why.as_code().to_owned(),
        ];
        let v = self.eval(&RAISE_SCRIPT, key, args).await?;
        let text = v
            .as_string()
            .ok_or_else(|| StoreError::Corrupt("not-before script answer".into()))?;
        let (at, why) = text.split_once(',').unwrap_or((&text, ""));
        Ok((at.parse().ok(), why.to_owned()))
    }

    pub(crate) async fn raise_not_before_inner(
        &self,
        scope: Scope<'_>,
        to: NotBefore,
    ) -> Result<NotBefore, StoreError> {
        let (key, in_force) = match scope {
            Scope::Everyone => {
                let key = self.global_not_before_key();
                (key.clone(), self.raise(key, ("at", "why"), to).await?)
            }
            Scope::User(user) => {
                // The high-water mark first (see the module docs).
                self.raise(self.global_not_before_key(), ("users", ""), to)
                    .await?;
                let key = self.user_not_before_key(user);
                (key.clone(), self.raise(key, ("at", "why"), to).await?)
            }
        };
        let (at, why) = in_force;
        parse(at.map(|a| a.to_string()).as_deref(), Some(&why))?
            .ok_or_else(|| StoreError::Corrupt(format!("not-before not stored under {key}")))
    }

    pub(crate) async fn not_before_inner(
        &self,
        scope: Scope<'_>,
    ) -> Result<Option<NotBefore>, StoreError> {
        match scope {
            Scope::Everyone => Ok(self.global_not_before().await?.everyone),
            Scope::User(user) => self.user_not_before(user).await,
        }
    }
}
