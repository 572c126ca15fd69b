//! [`Session`]: the per-request, lazily loaded view of a session.
//!
//! A web integration makes one `Session` per request from the presented
//! cookie (or bearer token), hands it to the application, and calls
//! [`Session::commit`] after the handler to learn what to do with the
//! cookie. Nothing touches the store until the application asks for
//! something, so routes that never use the session cost no store call.
//!
//! Data writes ([`Session::insert`], [`Session::remove`]) are buffered and
//! written once at commit, merged key by key onto the latest stored data.
//! Lifecycle operations ([`Session::login`], [`Session::rotate`],
//! [`Session::logout`]) and [`Session::update`] act on the store at once, so
//! the handler learns about failures while it can still answer 503.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::audit::{self, AuditKind};
use crate::cookie::Presented;
use crate::dbsc::{BoundState, Dbsc, Tier};
use crate::error::SessionError;
use crate::manager::{Access, Renewal, SessionManager};
use crate::policy::{ExpiryReason, SessionClass};
use crate::record::{ClientMeta, Data, DataChanges, SessionRecord};
use crate::store::{Patch, PatchOp, PatchOutcome};
use crate::time::Timestamp;
use crate::token::SessionToken;

/// What the web layer must do with the session cookie after a request.
///
/// Exhaustive on purpose: a web layer matches every action, so a new one
/// is a compile error in each layer rather than a request that silently
/// keeps (or fails on) a cookie it should have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieAction {
    /// Leave the client's cookie alone.
    Keep,
    /// Install a new token.
    Set {
        /// The new token.
        token: SessionToken,
        /// Remaining absolute lifetime.
        max_age: Duration,
    },
    /// Delete the cookie (sign-out, or the presented session is gone).
    Clear {
        /// True after an explicit sign-out, when `Clear-Site-Data` is
        /// appropriate.
        logout: bool,
    },
}

/// Why the request has no usable session, when it presented one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The session expired (idle or absolute).
    Expired(ExpiryReason),
    /// Unknown token: never issued, or its tombstone is gone.
    Unknown,
    /// Ended by its own sign-out.
    SignedOut,
    /// Revoked (device list, password change, an administrator, …).
    Revoked(crate::ended::Revocation),
    /// The presented value is not a well-formed token.
    Malformed,
    /// Several different session cookies were presented.
    Ambiguous,
    /// The session is device-bound ([`crate::dbsc`], required mode) and
    /// the request carried no live bound cookie: it is not authenticated.
    /// The session itself lives on; the device's next refresh restores it.
    DeviceUnbound,
}

impl EndReason {
    /// The client-facing code: `signed_out`, `revoked`, `expired_idle`,
    /// `expired_absolute`, `device_unbound` or `missing`.
    ///
    /// ```
    /// use tessera::session::EndReason;
    /// assert_eq!(EndReason::Unknown.as_code(), "missing");
    /// ```
    pub const fn as_code(self) -> &'static str {
        match self {
            Self::Expired(reason) => reason.as_code(),
            Self::SignedOut => "signed_out",
            Self::Revoked(_) => "revoked",
            Self::DeviceUnbound => "device_unbound",
            _ => "missing",
        }
    }
}

/// The session of one request. Cheap to clone (clones share state).
///
/// ```
/// use tessera::{Session, SessionManager};
/// use tessera::cookie::Presented;
/// use tessera::session::CookieAction;
/// use tessera::store::MemoryStore;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = SessionManager::builder(MemoryStore::new()).build()?;
/// let session = Session::new(manager.clone(), Presented::Absent, Default::default());
/// session.login("alice").await?;
/// session.insert("theme", "dark").await?;
/// let CookieAction::Set { token, .. } = session.commit().await? else { unreachable!() };
///
/// // The next request presents the token.
/// let next = Session::new(manager, Presented::Token(token), Default::default());
/// assert_eq!(next.user_id().await?.as_deref(), Some("alice"));
/// assert_eq!(next.get::<String>("theme").await?.as_deref(), Some("dark"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

struct Shared {
    manager: SessionManager,
    client: ClientMeta,
    status_only: AtomicBool,
    /// The DBSC gate, when the integration enables device binding: the
    /// engine and the request's bound-cookie value.
    dbsc: OnceLock<(Dbsc, Option<String>)>,
    state: Mutex<State>,
}

struct State {
    presented: Presented,
    loaded: bool,
    record: Option<SessionRecord>,
    end: Option<EndReason>,
    /// The request's device binding, once loaded through the DBSC gate.
    bound: Option<BoundState>,
    changes: DataChanges,
    cookie: CookieAction,
    /// A store call of this request failed. Remembered so that commit
    /// fails too, even if the handler swallowed the error: the request
    /// must not be answered as if the session had been checked.
    failed: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    /// A session for a request that presented `presented`.
    pub fn new(manager: SessionManager, presented: Presented, client: ClientMeta) -> Self {
        let end = match presented {
            Presented::Malformed => Some(EndReason::Malformed),
            Presented::Ambiguous => {
                audit::emit(AuditKind::AmbiguousCookie, None, None, "");
                Some(EndReason::Ambiguous)
            }
            _ => None,
        };
        Self {
            shared: Arc::new(Shared {
                manager,
                client,
                status_only: AtomicBool::new(false),
                dbsc: OnceLock::new(),
                state: Mutex::new(State {
                    presented,
                    loaded: false,
                    record: None,
                    end,
                    bound: None,
                    changes: DataChanges::default(),
                    cookie: CookieAction::Keep,
                    failed: false,
                }),
            }),
        }
    }

    /// Puts the request behind the DBSC gate ([`crate::dbsc`]): when the
    /// session is loaded, `bound_cookie` (the value of the bound cookie the
    /// request carried) is checked with [`Dbsc::check`], and a bound
    /// session without a live bound cookie is not authenticated in
    /// [`crate::dbsc::DbscMode::Required`] ([`EndReason::DeviceUnbound`]);
    /// in additive mode it is served, and the miss is audited
    /// (`dbsc_unbound_request`). Call it before the session is used; a
    /// second call is ignored.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tessera::{Session, SessionManager};
    /// use tessera::cookie::Presented;
    /// use tessera::dbsc::{Dbsc, DbscConfig, DbscMode, MemoryDbscStore, Tier};
    /// use tessera::store::MemoryStore;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let config = DbscConfig { mode: DbscMode::Required, ..DbscConfig::default() };
    /// let dbsc = Dbsc::new(config, Arc::new(MemoryDbscStore::new()));
    /// let session = Session::new(manager, Presented::Absent, Default::default())
    ///     .with_dbsc(dbsc, None);
    /// session.login("alice").await?;
    /// // Signed in, not (yet) bound to a device key.
    /// assert_eq!(session.tier().await?, Some(Tier::Unbound));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_dbsc(self, dbsc: Dbsc, bound_cookie: Option<String>) -> Self {
        let _ = self.shared.dbsc.set((dbsc, bound_cookie));
        self
    }

    /// The request's device-binding tier ([`Tier::Bound`] only with a live
    /// bound cookie), or `None` without a live session. Always
    /// [`Tier::Unbound`] without the DBSC gate ([`Session::with_dbsc`]).
    ///
    /// # Errors
    ///
    /// Store errors (fail closed).
    pub async fn tier(&self) -> Result<Option<Tier>, SessionError> {
        let mut state = self.loaded().await?;
        if state.record.is_none() {
            return Ok(None);
        }
        if state.bound.is_none() {
            // A session made by this request (a sign-in) is new: checking
            // it gives `Unbound`, but through the store like any other.
            if let (Some((dbsc, cookie)), Some(record)) = (self.shared.dbsc.get(), &state.record) {
                let bound = dbsc
                    .check(&self.shared.manager, record, cookie.as_deref())
                    .await
                    .inspect_err(|_| state.failed = true)?;
                state.bound = Some(bound);
            }
        }
        Ok(Some(state.bound.map_or(Tier::Unbound, BoundState::tier)))
    }

    /// The manager behind this session.
    pub fn manager(&self) -> &SessionManager {
        &self.shared.manager
    }

    /// Marks this request as a status query: it does not count as activity,
    /// so the idle deadline does not move (a page polling its own expiry
    /// must not keep itself alive).
    pub fn mark_status_query(&self) {
        self.shared.status_only.store(true, Ordering::Relaxed);
    }

    fn access(&self) -> Access {
        if self.shared.status_only.load(Ordering::Relaxed) {
            Access::Status
        } else {
            Access::Activity
        }
    }

    /// Loads the record if not done yet. Returns the state guard.
    async fn loaded(&self) -> Result<tokio::sync::MutexGuard<'_, State>, SessionError> {
        let mut state = self.shared.state.lock().await;
        if !state.loaded {
            // Hashed in place: the token itself is never copied.
            if let Some(hash) = state.presented.token().map(SessionToken::hash) {
                match self.shared.manager.load_hash(&hash).await {
                    Ok(record) => state.record = Some(record),
                    Err(SessionError::NotFound) => state.end = Some(EndReason::Unknown),
                    Err(SessionError::SignedOut) => state.end = Some(EndReason::SignedOut),
                    Err(SessionError::Revoked { by }) => {
                        state.end = Some(EndReason::Revoked(by));
                    }
                    Err(SessionError::Expired { reason }) => {
                        state.end = Some(EndReason::Expired(reason));
                    }
                    // Store trouble: stay unloaded so nothing is decided on
                    // missing information, and fail the request.
                    Err(e) => {
                        state.failed = true;
                        return Err(e);
                    }
                }
                if state.record.is_none() {
                    // The client holds a dead cookie: tell it to drop it.
                    state.cookie = CookieAction::Clear { logout: false };
                } else if let Some((dbsc, cookie)) = self.shared.dbsc.get() {
                    self.gate(&mut state, dbsc, cookie.as_deref()).await?;
                }
            }
            state.loaded = true;
        }
        Ok(state)
    }

    /// The DBSC gate of a loaded live session: classify the request by its
    /// bound cookie and, where the mode does not admit it, serve it without
    /// the session. The session cookie is kept: the session is alive, and
    /// the device's next refresh restores the bound cookie.
    async fn gate(
        &self,
        state: &mut State,
        dbsc: &Dbsc,
        cookie: Option<&str>,
    ) -> Result<(), SessionError> {
        let Some(record) = &state.record else {
            return Ok(());
        };
        let bound = match dbsc.classify(&self.shared.manager, record, cookie).await {
            Ok(bound) => bound,
            Err(e) => {
                state.failed = true;
                return Err(e.into());
            }
        };
        state.bound = Some(bound);
        if !dbsc.admits(bound) {
            state.record = None;
            state.end = Some(EndReason::DeviceUnbound);
        }
        Ok(())
    }

    /// The stored record, with this request's pending changes applied to
    /// its data; `None` without a live session.
    ///
    /// # Errors
    ///
    /// Store errors (fail closed).
    pub async fn record(&self) -> Result<Option<SessionRecord>, SessionError> {
        let state = self.loaded().await?;
        Ok(state.record.clone().map(|mut r| {
            state.changes.apply(&mut r.data);
            r
        }))
    }

    /// Whether the request has a live session (anonymous or signed in),
    /// loading it if not done yet. Cheaper than [`Session::record`] when
    /// only existence matters: nothing is copied.
    ///
    /// ```
    /// use tessera::{Session, SessionManager};
    /// use tessera::cookie::Presented;
    /// use tessera::store::MemoryStore;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let session = Session::new(manager, Presented::Absent, Default::default());
    /// assert!(!session.is_live().await?);
    /// session.login("alice").await?;
    /// assert!(session.is_live().await?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Store errors (fail closed).
    pub async fn is_live(&self) -> Result<bool, SessionError> {
        Ok(self.loaded().await?.record.is_some())
    }

    /// The signed-in user, if any.
    ///
    /// # Errors
    ///
    /// Store errors (fail closed).
    pub async fn user_id(&self) -> Result<Option<String>, SessionError> {
        let state = self.loaded().await?;
        Ok(state.record.as_ref().and_then(|r| r.user_id.clone()))
    }

    /// Why the presented session is not usable, if one was presented and it
    /// is not (for "you were signed out after inactivity" pages).
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn end_reason(&self) -> Result<Option<EndReason>, SessionError> {
        Ok(self.loaded().await?.end)
    }

    /// A value from the session data.
    ///
    /// # Errors
    ///
    /// [`SessionError::Data`] if it does not deserialize as `T`; store errors.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let state = self.loaded().await?;
        let value = match state.changes.pending(key) {
            Some(pending) => pending.cloned(),
            None => state.record.as_ref().and_then(|r| r.data.get(key).cloned()),
        };
        Ok(value.map(serde_json::from_value).transpose()?)
    }

    /// Sets a value, written at commit. Without a session, commit creates an
    /// anonymous one.
    ///
    /// # Errors
    ///
    /// [`SessionError::Data`] if `value` does not serialize.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = serde_json::to_value(value)?;
        self.shared.state.lock().await.changes.set(key, value);
        Ok(())
    }

    /// Removes a value, at commit.
    ///
    /// # Errors
    ///
    /// None today; returns `Result` for symmetry with [`Session::insert`].
    pub async fn remove(&self, key: &str) -> Result<(), SessionError> {
        self.shared.state.lock().await.changes.remove(key);
        Ok(())
    }

    /// Atomic read-modify-write of one key, performed now: `f` gets the
    /// current value and returns the new one; concurrent updates of the same
    /// key are serialised, none is lost. Without a session, one is created
    /// holding `f(None)`.
    ///
    /// # Errors
    ///
    /// [`SessionError::Data`], store errors.
    pub async fn update<T, F>(&self, key: &str, f: F) -> Result<T, SessionError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: Fn(Option<T>) -> T + Send + Sync,
    {
        let mut state = self.loaded().await?;
        let Some(record) = state.record.clone() else {
            let value = f(None);
            let mut data = Data::new();
            data.insert(key.to_owned(), serde_json::to_value(&value)?);
            self.issue(&mut state, None, data, SessionClass::Default)
                .await?;
            return Ok(value);
        };
        let (value, written) = self
            .shared
            .manager
            .update_value_written(&record, key, f)
            .await?;
        // The record as now stored: its new version and deadlines make the
        // commit's touch check (and any later write) start from the truth.
        state.record = Some(written);
        Ok(value)
    }

    /// Adds `by` to the integer under `key` (absent counts as 0) and
    /// returns the new value, performed now as one store operation
    /// ([`Store::patch`](crate::store::Store::patch)): concurrent
    /// increments of one session are all counted, and a store that applies
    /// patches itself (Redis) needs no read before the write. Without a
    /// session, one is created holding `by`.
    ///
    /// ```
    /// use tessera::{Session, SessionManager};
    /// use tessera::cookie::Presented;
    /// use tessera::store::MemoryStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let session = Session::new(manager, Presented::Absent, Default::default());
    /// assert_eq!(session.increment("visits", 1).await?, 1);
    /// assert_eq!(session.increment("visits", 2).await?, 3);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::Data`] if the stored value is not an integer or the
    /// sum overflows `i64` (nothing is written); store errors.
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64, SessionError> {
        let mut state = self.loaded().await?;
        let Some(record) = state.record.as_ref() else {
            let mut data = Data::new();
            data.insert(key.to_owned(), by.into());
            self.issue(&mut state, None, data, SessionClass::Default)
                .await?;
            return Ok(by);
        };
        let ops = vec![PatchOp::Increment {
            key: key.to_owned(),
            by,
        }];
        let outcome = self
            .shared
            .manager
            .patch(&record.hash, Some(record), ops, self.access())
            .await;
        let written = match outcome {
            Ok(PatchOutcome::Applied(written)) => written,
            Ok(PatchOutcome::Refused { record, .. }) => {
                state.record = Some(record);
                return Err(SessionError::Data(serde::de::Error::custom(format!(
                    "session key {key:?} does not hold an integer that can take {by:+}"
                ))));
            }
            Ok(PatchOutcome::Missing) | Err(SessionError::NotFound) => {
                // Revoked or expired since it was loaded: never resurrected.
                state.record = None;
                state.end = Some(EndReason::Unknown);
                state.cookie = CookieAction::Clear { logout: false };
                return Err(SessionError::NotFound);
            }
            Err(e) => {
                // Store trouble fails the whole request, as a failed load does.
                state.failed |= matches!(e, SessionError::Store(_));
                return Err(e);
            }
        };
        let value = written.data.get(key).and_then(serde_json::Value::as_i64);
        // The record as now stored: the commit's touch check starts from it.
        state.record = Some(written);
        value.ok_or_else(|| SessionError::Data(serde::de::Error::custom("counter vanished")))
    }

    async fn issue(
        &self,
        state: &mut State,
        user_id: Option<String>,
        data: Data,
        class: SessionClass,
    ) -> Result<(), SessionError> {
        self.issue_checked(state, user_id, data, class, None).await
    }

    async fn issue_checked(
        &self,
        state: &mut State,
        user_id: Option<String>,
        mut data: Data,
        class: SessionClass,
        checked_at: Option<Timestamp>,
    ) -> Result<(), SessionError> {
        state.changes.apply(&mut data);
        state.changes = DataChanges::default();
        let manager = &self.shared.manager;
        let client = self.shared.client.clone();
        let issued = match (user_id, checked_at) {
            (Some(user), Some(at)) => {
                manager
                    .create_signed_in(user, data, client, class, at)
                    .await?
            }
            (user_id, _) => {
                manager
                    .create_with_class(user_id, data, client, class)
                    .await?
            }
        };
        let max_age = issued.max_age(self.shared.manager.now());
        state.cookie = CookieAction::Set {
            token: issued.token,
            max_age,
        };
        state.record = Some(issued.record);
        state.end = None;
        Ok(())
    }

    async fn renew(
        &self,
        renewal: Renewal,
        class: Option<SessionClass>,
    ) -> Result<(), SessionError> {
        self.renew_checked(renewal, class, None).await
    }

    async fn renew_checked(
        &self,
        renewal: Renewal,
        class: Option<SessionClass>,
        checked_at: Option<Timestamp>,
    ) -> Result<(), SessionError> {
        let mut state = self.loaded().await?;
        let manager = &self.shared.manager;
        let Some(record) = state.record.clone() else {
            return match renewal {
                Renewal::Login { user_id } => {
                    let class = class.unwrap_or_default();
                    self.issue_checked(&mut state, Some(user_id), Data::new(), class, checked_at)
                        .await
                }
                _ => Err(SessionError::Unauthenticated),
            };
        };
        let issued = match (renewal, checked_at) {
            (Renewal::Login { user_id }, Some(at)) => {
                manager
                    .sign_in_checked(&record.hash, user_id, &state.changes, class, at)
                    .await?
            }
            (renewal, _) => {
                manager
                    .rotate_with_class(&record.hash, renewal, &state.changes, class)
                    .await?
            }
        };
        state.changes = DataChanges::default();
        let max_age = issued.max_age(self.shared.manager.now());
        state.cookie = CookieAction::Set {
            token: issued.token,
            max_age,
        };
        state.record = Some(issued.record);
        Ok(())
    }

    /// Signs `user_id` in: a brand-new token replaces any presented one,
    /// which stops working at once (no fixation; ASVS 5.0 V7.2.4).
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn login(&self, user_id: &str) -> Result<(), SessionError> {
        self.login_with_class(user_id, SessionClass::Default).await
    }

    /// [`Session::login`] into a session of lifetime `class`: the user's
    /// choice at this sign-in ("keep me signed in" for
    /// [`SessionClass::Remember`]), whatever the presented session had.
    /// The cookie's `Max-Age` is the remaining absolute lifetime of the
    /// class.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unsupported`] if the policy does not offer `class`
    /// (nothing is written); store errors.
    pub async fn login_with_class(
        &self,
        user_id: &str,
        class: SessionClass,
    ) -> Result<(), SessionError> {
        self.renew(
            Renewal::Login {
                user_id: user_id.to_owned(),
            },
            Some(class),
        )
        .await
    }

    /// [`Session::login_with_class`] for a sign-in whose credential check
    /// started at `checked_at` (read from [`SessionManager::now`] before the
    /// password hash was read): the session counts as created just before
    /// it, so a password change or account disable that committed after the
    /// check read the old credential refuses it through the user's
    /// not-before ([`crate::not_before`]; ASVS 5.0 V7.4.3).
    ///
    /// # Errors
    ///
    /// As [`Session::login_with_class`].
    pub async fn login_checked(
        &self,
        user_id: &str,
        class: SessionClass,
        checked_at: Timestamp,
    ) -> Result<(), SessionError> {
        let login = Renewal::Login {
            user_id: user_id.to_owned(),
        };
        self.renew_checked(login, Some(class), Some(checked_at))
            .await
    }

    /// Issues a new token for the same session (after a privilege change).
    ///
    /// # Errors
    ///
    /// [`SessionError::Unauthenticated`] without a session; store errors.
    pub async fn rotate(&self) -> Result<(), SessionError> {
        self.renew(Renewal::Rotate, None).await
    }

    /// Records a successful re-authentication: new token, fresh
    /// `authenticated_at` and deadlines.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unauthenticated`] without a session; store errors.
    pub async fn reauthenticated(&self) -> Result<(), SessionError> {
        self.renew(Renewal::Reauthenticate, None).await
    }

    /// Signs out: deletes the record now and clears the cookie at commit.
    /// Returns whether a session existed.
    ///
    /// # Errors
    ///
    /// Store errors (the cookie is then left alone: the session may still
    /// exist, and the client must be able to retry).
    pub async fn logout(&self) -> Result<bool, SessionError> {
        let mut state = self.loaded().await?;
        let existed = match state.record.take() {
            Some(record) => self.shared.manager.destroy(&record.hash).await?,
            None => false,
        };
        state.changes = DataChanges::default();
        state.cookie = CookieAction::Clear { logout: true };
        Ok(existed)
    }

    /// A masked CSRF token for this render, or `None` without a session.
    ///
    /// # Errors
    ///
    /// Store and randomness errors.
    pub async fn csrf_token(&self) -> Result<Option<String>, SessionError> {
        let state = self.loaded().await?;
        match &state.record {
            Some(r) => Ok(Some(r.csrf_secret.masked_token()?)),
            None => Ok(None),
        }
    }

    /// Whether `presented` is a valid CSRF token of this session
    /// (constant-time). False without a session.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn verify_csrf(&self, presented: &str) -> Result<bool, SessionError> {
        let state = self.loaded().await?;
        Ok(state
            .record
            .as_ref()
            .is_some_and(|r| r.csrf_secret.verify(presented)))
    }

    /// [`Session::commit`] without waiting, when it needs no store call:
    /// the request changed nothing and, if it loaded a live session, its
    /// idle deadline is inside the touch step (or the request is a
    /// [status query](Session::mark_status_query)). Returns `None` when
    /// the commit must write, or when another holder of this session is
    /// using it at this moment; call [`Session::commit`] then.
    ///
    /// The decision is the one [`Session::commit`] makes (it starts with
    /// this call), so a web layer may run this first and await `commit`
    /// only on the write path: a read pays for no future of the write path.
    ///
    /// ```
    /// use tessera::{Session, SessionManager};
    /// use tessera::cookie::Presented;
    /// use tessera::session::CookieAction;
    /// use tessera::store::MemoryStore;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SessionManager::builder(MemoryStore::new()).build()?;
    /// let session = Session::new(manager.clone(), Presented::Absent, Default::default());
    /// // Nothing used, nothing to write: settled at once.
    /// assert_eq!(session.try_commit().transpose()?, Some(CookieAction::Keep));
    /// // A pending change needs the store: the caller awaits `commit`.
    /// session.insert("theme", "dark").await?;
    /// assert!(session.try_commit().is_none());
    /// assert!(matches!(session.commit().await?, CookieAction::Set { .. }));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// `Some(Err(_))` if a store call of this request failed: the response
    /// must become a 503, as with [`Session::commit`].
    pub fn try_commit(&self) -> Option<Result<CookieAction, SessionError>> {
        let state = self.shared.state.try_lock().ok()?;
        if state.failed {
            return Some(Err(failed_earlier()));
        }
        if !state.changes.is_empty() {
            return None;
        }
        if let (true, Some(record)) = (state.loaded, state.record.as_ref()) {
            let manager = &self.shared.manager;
            let touch = self.access() == Access::Activity
                && manager
                    .policy()
                    .needs_touch_for(record.class, &record.deadlines, manager.now());
            if touch {
                return None;
            }
        }
        Some(Ok(state.cookie.clone()))
    }

    /// Finishes the request: writes buffered changes and activity in one
    /// store write (or none, inside the touch step), and says what to do
    /// with the cookie.
    ///
    /// # Errors
    ///
    /// Store errors: the response must become a 503.
    pub async fn commit(&self) -> Result<CookieAction, SessionError> {
        if let Some(done) = self.try_commit() {
            return done;
        }
        let state = self.shared.state.lock().await;
        if state.failed {
            return Err(failed_earlier());
        }
        let has_changes = !state.changes.is_empty();
        if !state.loaded && !has_changes {
            return Ok(state.cookie.clone());
        }
        drop(state);
        let mut state = self.loaded().await?;
        let access = self.access();
        // Only the deadlines are needed to decide: no record clone on the
        // read path.
        match state.record.as_ref().map(|r| (r.class, r.deadlines)) {
            Some((class, deadlines)) => {
                let manager = &self.shared.manager;
                let touch = access == Access::Activity
                    && manager
                        .policy()
                        .needs_touch_for(class, &deadlines, manager.now());
                if has_changes || touch {
                    // The record loaded by this request is the first
                    // compare-and-set base: no second read before the write.
                    let written = match state.record.as_ref() {
                        Some(record) => {
                            let ops = Patch::ops_from_changes(&state.changes);
                            match manager.patch(&record.hash, Some(record), ops, access).await {
                                Ok(PatchOutcome::Applied(record)) => Ok(record),
                                // Sets and removals have no expectation to
                                // miss; the manager maps a size refusal.
                                Ok(_) => Err(SessionError::Conflict),
                                Err(e) => Err(e),
                            }
                        }
                        None => Err(SessionError::NotFound),
                    };
                    match written {
                        Ok(updated) => state.record = Some(updated),
                        Err(SessionError::NotFound) => {
                            // Revoked or expired during the request: the
                            // write is dropped, never resurrecting it.
                            state.record = None;
                            state.end = Some(EndReason::Unknown);
                            state.cookie = CookieAction::Clear { logout: false };
                        }
                        Err(e) => return Err(e),
                    }
                    state.changes = DataChanges::default();
                }
            }
            // A device-bound session refused by the DBSC gate is still the
            // client's session: a write here must not replace its cookie
            // with a new anonymous session, so it is dropped.
            None if has_changes
                && !matches!(state.cookie, CookieAction::Clear { logout: true })
                && state.end != Some(EndReason::DeviceUnbound) =>
            {
                self.issue(&mut state, None, Data::new(), SessionClass::Default)
                    .await?;
            }
            None => {}
        }
        Ok(state.cookie.clone())
    }
}

/// The error of a commit after a failed store call of the same request.
fn failed_earlier() -> SessionError {
    SessionError::Store(crate::error::StoreError::unavailable(
        "a store call of this request failed",
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::MemoryStore;
    use crate::time::{ManualClock, Timestamp};

    /// `try_commit` settles exactly the commits that need no store write,
    /// and leaves the others (a pending change, a due touch) to `commit`.
    #[tokio::test]
    async fn try_commit_settles_only_what_needs_no_write() {
        let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
        let manager = SessionManager::builder(MemoryStore::new())
            .clock(clock.clone())
            .build()
            .unwrap();
        let first = Session::new(manager.clone(), Presented::Absent, ClientMeta::default());
        assert_eq!(first.try_commit().unwrap().unwrap(), CookieAction::Keep);
        first.login("alice").await.unwrap();
        let CookieAction::Set { token, .. } = first.try_commit().unwrap().unwrap() else {
            panic!("a sign-in sets the cookie");
        };

        // A read inside the touch step: settled, nothing written.
        let read = Session::new(
            manager.clone(),
            Presented::Token(token.clone()),
            ClientMeta::default(),
        );
        assert_eq!(read.user_id().await.unwrap().as_deref(), Some("alice"));
        assert_eq!(read.try_commit().unwrap().unwrap(), CookieAction::Keep);

        // A read past the touch step must move the idle deadline: not settled.
        clock.advance(Duration::from_secs(120));
        let due = Session::new(
            manager.clone(),
            Presented::Token(token.clone()),
            ClientMeta::default(),
        );
        assert!(due.is_live().await.unwrap());
        assert!(due.try_commit().is_none());
        // A status query never moves it.
        due.mark_status_query();
        assert_eq!(due.try_commit().unwrap().unwrap(), CookieAction::Keep);

        // A pending change needs the store.
        let write = Session::new(manager, Presented::Token(token), ClientMeta::default());
        write.insert("theme", "dark").await.unwrap();
        assert!(write.try_commit().is_none());
        assert_eq!(write.commit().await.unwrap(), CookieAction::Keep);
    }
}
