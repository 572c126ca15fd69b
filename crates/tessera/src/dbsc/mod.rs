//! Device Bound Session Credentials (W3C WebAppSec DBSC): a session bound
//! to a key the browser keeps in hardware, so that a stolen cookie stops
//! working within minutes.
//!
//! # The protocol, as tessera speaks it
//!
//! 1. The sign-in response carries `Secure-Session-Registration` with a
//!    fresh single-use challenge ([`Dbsc::registration_header`]).
//! 2. The browser makes a key and POSTs a `dbsc+jwt` proof (its `jwk` in
//!    the header, the challenge as `jti`) to the registration path:
//!    [`Dbsc::register`] verifies it, binds the session to the key's RFC 7638
//!    thumbprint, and returns a short-lived **bound cookie** and the session
//!    config JSON.
//! 3. When the bound cookie has expired the browser defers requests and
//!    POSTs the refresh path: [`Dbsc::refresh`] answers with a challenge
//!    (403 + `Secure-Session-Challenge`) until a fresh proof from the bound
//!    key arrives, then issues a new bound cookie.
//! 4. Every request is classified by [`Dbsc::check`]: [`BoundState::Bound`]
//!    (valid bound cookie), [`BoundState::Unbound`] (never registered), or
//!    [`BoundState::Stale`] (registered, but the bound cookie is missing or
//!    expired). In [`DbscMode::Required`] a stale request is not
//!    authenticated; in [`DbscMode::Additive`] it is served as unbound and
//!    only logged and counted.
//!
//! # Security properties
//!
//! - The bound cookie's lifetime is enforced **in the store**, not only by
//!   its `Max-Age`: a copied cookie stops working when its row expires.
//! - A session is bound once. A thief holding every cookie can neither
//!   re-register it with their own key ([`DbscError::AlreadyBound`]) nor
//!   refresh it: a proof that verifies under another key revokes the
//!   session ([`crate::ended::Revocation::DbscKeyMismatch`]) and writes the
//!   audit event `dbsc_key_mismatch`.
//! - Challenges are single-use across instances (an atomic delete in the
//!   store). Several may be live at once, each for
//!   [`DbscConfig::challenge_lifetime`], so a proof answering a slightly
//!   older challenge (two refreshes racing, a lost response) still counts.
//! - A lost refresh never strands a user: nothing is consumed until a proof
//!   verifies, so after a network error or a 5xx the browser's next refresh
//!   gets a new challenge and succeeds; the session (whose long-lived cookie
//!   is untouched) never needs a new sign-in.
//!
//! What DBSC does not do: a stolen bound cookie works until it expires
//! ([`DbscConfig::cookie_lifetime`]), and malware on the device itself can
//! ask the hardware to sign.

mod config;
pub mod header;
mod outcome;
mod proof;
mod state;
mod store;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

pub use self::config::{DbscConfig, DbscMode};
pub use self::outcome::{BoundCookie, DbscError, RefreshOutcome, Registered};
pub use self::proof::{MAX_PROOF_LEN, Proof, ProofAlg, ProofError, PublicJwk};
pub use self::state::{BoundState, Tier};
pub use self::store::{DbscBinding, DbscStore, MemoryDbscStore, Secret};
use crate::audit::{self, AuditKind};
use crate::ended::Revocation;
use crate::error::{SessionError, StoreError};
use crate::manager::SessionManager;
use crate::record::{SessionHandle, SessionRecord};
use crate::time::Timestamp;

/// SHA-256 of a challenge or cookie value, hex: the only form stores see.
///
/// ```
/// assert_eq!(tessera::dbsc::digest("abc").len(), 64);
/// ```
pub fn digest(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_value() -> Result<String, SessionError> {
    let mut raw = [0u8; 32];
    crate::random::fill(&mut raw)?;
    Ok(URL_SAFE_NO_PAD.encode(raw))
}

fn min_ts(a: Timestamp, b: Timestamp) -> Timestamp {
    if a < b { a } else { b }
}

/// The DBSC engine: framework-free, all state in a [`DbscStore`], time from
/// the [`SessionManager`]'s clock.
#[derive(Clone)]
pub struct Dbsc {
    config: Arc<DbscConfig>,
    store: Arc<dyn DbscStore>,
}

impl std::fmt::Debug for Dbsc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dbsc")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Dbsc {
    /// An engine over `store`.
    pub fn new(config: DbscConfig, store: Arc<dyn DbscStore>) -> Self {
        Self {
            config: Arc::new(config),
            store,
        }
    }

    /// The settings.
    pub fn config(&self) -> &DbscConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn DbscStore> {
        &self.store
    }

    async fn issue_challenge(
        &self,
        session: &SessionRecord,
        now: Timestamp,
    ) -> Result<String, SessionError> {
        let challenge = random_value()?;
        let expires = min_ts(
            now + self.config.challenge_lifetime,
            session.deadlines.absolute,
        );
        self.store
            .put_secret(
                &session.handle,
                Secret::Challenge,
                &digest(&challenge),
                expires,
            )
            .await?;
        Ok(challenge)
    }

    async fn issue_cookie(
        &self,
        session: &SessionRecord,
        now: Timestamp,
    ) -> Result<BoundCookie, SessionError> {
        let value = random_value()?;
        let expires = min_ts(
            now + self.config.cookie_lifetime,
            session.deadlines.absolute,
        );
        self.store
            .put_secret(&session.handle, Secret::Cookie, &digest(&value), expires)
            .await?;
        Ok(BoundCookie {
            name: self.config.cookie_name.clone(),
            value,
            max_age: now.until(expires),
            attributes: self.config.cookie_attributes(),
        })
    }

    /// The `Secure-Session-Registration` value for a sign-in response,
    /// with a new challenge stored for `session`. `None` when the mode is
    /// off or the session is already bound.
    ///
    /// # Errors
    ///
    /// Store or randomness errors.
    pub async fn registration_header(
        &self,
        manager: &SessionManager,
        session: &SessionRecord,
    ) -> Result<Option<String>, SessionError> {
        if self.config.mode == DbscMode::Off {
            return Ok(None);
        }
        let now = manager.now();
        if self
            .store
            .load_binding(&session.handle, now)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let challenge = self.issue_challenge(session, now).await?;
        Ok(header::registration(
            &self.config.registration_path,
            &challenge,
            None,
        ))
    }

    /// Handles a registration POST. `response` is the raw
    /// `Secure-Session-Response` value.
    ///
    /// # Errors
    ///
    /// [`DbscError::Refused`] / [`DbscError::StaleChallenge`] for a proof
    /// that does not count (the caller may retry with a new challenge),
    /// [`DbscError::AlreadyBound`], store errors. Nothing is stored on error.
    pub async fn register(
        &self,
        manager: &SessionManager,
        session: &SessionRecord,
        response: &str,
    ) -> Result<Registered, DbscError> {
        let jwt = header::string_item(response).ok_or(DbscError::Refused(ProofError::Malformed))?;
        let proof = Proof::parse(&jwt).map_err(DbscError::Refused)?;
        let key = proof.verify_registration().map_err(DbscError::Refused)?;
        let now = manager.now();
        // Checked before the challenge is spent, so a thief replaying the
        // flow on a bound session learns nothing and burns nothing.
        if self
            .store
            .load_binding(&session.handle, now)
            .await?
            .is_some()
        {
            return Err(DbscError::AlreadyBound);
        }
        let jti = proof.jti().ok_or(DbscError::StaleChallenge)?;
        if !self
            .store
            .consume_challenge(&session.handle, &digest(jti), now)
            .await?
        {
            return Err(DbscError::StaleChallenge);
        }
        let binding = DbscBinding {
            handle: session.handle.clone(),
            session_id: random_value()?,
            thumbprint: key.thumbprint(),
            jwk: key,
            bound_at: now,
            expires_at: session.deadlines.absolute,
        };
        // Two registrations racing with two live challenges: one binds.
        if !self.store.bind(&binding, now).await? {
            return Err(DbscError::AlreadyBound);
        }
        let cookie = self.issue_cookie(session, now).await?;
        audit::emit(
            AuditKind::DbscRegistered,
            Some(&session.handle),
            session.user_id.as_deref(),
            &binding.thumbprint,
        );
        let config = self.session_config(&binding);
        Ok(Registered {
            binding,
            cookie,
            config,
        })
    }

    /// The session config JSON returned by registration (W3C DBSC "session
    /// instructions"): host-only scope, one cookie credential whose
    /// attributes equal its `Set-Cookie`.
    pub fn session_config(&self, binding: &DbscBinding) -> serde_json::Value {
        serde_json::json!({
            "session_identifier": binding.session_id,
            "refresh_url": self.config.refresh_path,
            "scope": { "include_site": false, "scope_specification": [] },
            "credentials": [{
                "type": "cookie",
                "name": self.config.cookie_name,
                "attributes": self.config.cookie_attributes(),
            }],
        })
    }

    /// Handles a refresh POST: `session_id` is the `Sec-Secure-Session-Id`
    /// value, `response` the `Secure-Session-Response` value if sent.
    ///
    /// # Errors
    ///
    /// [`DbscError::NotBound`] (answer `{"continue": false}`),
    /// [`DbscError::KeyMismatch`] (the session has been revoked and
    /// audited), store errors.
    pub async fn refresh(
        &self,
        manager: &SessionManager,
        session: &SessionRecord,
        session_id: Option<&str>,
        response: Option<&str>,
    ) -> Result<RefreshOutcome, DbscError> {
        let now = manager.now();
        let binding = self
            .store
            .load_binding(&session.handle, now)
            .await?
            .ok_or(DbscError::NotBound)?;
        let named = session_id.and_then(header::string_item);
        if named.as_deref().is_some_and(|id| id != binding.session_id) {
            return Err(DbscError::NotBound);
        }
        let refused = match response {
            None => None,
            Some(value) => match self.check_proof(manager, &binding, value, now).await? {
                Ok(()) => {
                    let cookie = self.issue_cookie(session, now).await?;
                    let config = self.session_config(&binding);
                    return Ok(RefreshOutcome::Refreshed { cookie, config });
                }
                Err(e) => Some(e),
            },
        };
        let challenge = self.issue_challenge(session, now).await?;
        let header = header::challenge(&challenge, &binding.session_id)
            .ok_or(DbscError::Refused(ProofError::Malformed))?;
        Ok(RefreshOutcome::Challenge { header, refused })
    }

    /// Verifies a refresh proof. The outer error ends the refresh; the
    /// inner one only asks for a new challenge.
    async fn check_proof(
        &self,
        manager: &SessionManager,
        binding: &DbscBinding,
        value: &str,
        now: Timestamp,
    ) -> Result<Result<(), ProofError>, DbscError> {
        let Some(jwt) = header::string_item(value) else {
            return Ok(Err(ProofError::Malformed));
        };
        let proof = match Proof::parse(&jwt) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        match proof.verify_refresh(&binding.jwk) {
            Ok(()) => {}
            Err(ProofError::KeyMismatch) => {
                // A valid signature under another key, presented with this
                // session's cookie: the cookies are in someone else's hands.
                manager
                    .revoke(&binding.handle, None, Revocation::DbscKeyMismatch)
                    .await?;
                self.store.delete_dbsc(&binding.handle).await?;
                audit::emit(
                    AuditKind::DbscKeyMismatch,
                    Some(&binding.handle),
                    None,
                    "refresh proof signed by another key; session revoked",
                );
                return Err(DbscError::KeyMismatch);
            }
            Err(e) => return Ok(Err(e)),
        }
        let Some(jti) = proof.jti() else {
            return Ok(Err(ProofError::UnknownChallenge));
        };
        if !self
            .store
            .consume_challenge(&binding.handle, &digest(jti), now)
            .await?
        {
            return Ok(Err(ProofError::UnknownChallenge));
        }
        Ok(Ok(()))
    }

    /// Classifies a request of `session` by its bound cookie value.
    ///
    /// # Errors
    ///
    /// Store errors (fail closed: the caller answers 503).
    pub async fn check(
        &self,
        manager: &SessionManager,
        session: &SessionRecord,
        bound_cookie: Option<&str>,
    ) -> Result<BoundState, StoreError> {
        if self.config.mode == DbscMode::Off {
            return Ok(BoundState::Unbound);
        }
        let now = manager.now();
        if let Some(value) = bound_cookie {
            // A live cookie row implies a binding: both are written only by
            // a verified proof and both die with the session.
            if value.len() <= 64
                && self
                    .store
                    .cookie_is_live(&session.handle, &digest(value), now)
                    .await?
            {
                return Ok(BoundState::Bound);
            }
        }
        Ok(match self.store.load_binding(&session.handle, now).await? {
            Some(_) => BoundState::Stale,
            None => BoundState::Unbound,
        })
    }

    /// [`Dbsc::check`] for a request about to be served, auditing a miss:
    /// a bound session without a live bound cookie writes
    /// `dbsc_unbound_request` (served in additive mode, refused in
    /// required mode; [`Dbsc::admits`] says which). Every surface that
    /// serves sessions calls this one function.
    ///
    /// # Errors
    ///
    /// Store errors (fail closed: the caller answers 503).
    pub async fn classify(
        &self,
        manager: &SessionManager,
        session: &SessionRecord,
        bound_cookie: Option<&str>,
    ) -> Result<BoundState, StoreError> {
        let state = self.check(manager, session, bound_cookie).await?;
        if state == BoundState::Stale {
            let detail = if self.admits(state) {
                "served (additive)"
            } else {
                "refused (required)"
            };
            audit::emit(
                AuditKind::DbscUnboundRequest,
                Some(&session.handle),
                session.user_id.as_deref(),
                detail,
            );
        }
        Ok(state)
    }

    /// True if a request in `state` may be served as authenticated under
    /// the configured mode.
    pub fn admits(&self, state: BoundState) -> bool {
        !(self.config.mode == DbscMode::Required && state == BoundState::Stale)
    }

    /// Records a `Secure-Session-Skipped` field (audit event
    /// `dbsc_refresh_skipped`). Returns what was parsed.
    pub fn record_skipped(
        &self,
        handle: Option<&SessionHandle>,
        value: &str,
    ) -> Option<header::Skipped> {
        let skipped = header::skipped(value)?;
        audit::emit(AuditKind::DbscRefreshSkipped, handle, None, &skipped.reason);
        Some(skipped)
    }
}

#[cfg(test)]
mod tests;
