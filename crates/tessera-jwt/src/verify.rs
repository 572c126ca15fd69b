//! Verifying access tokens without any store call.
//!
//! The order of checks is deliberate: the size bound comes before any
//! decoding; the header (the only part read before the signature is
//! checked) is parsed strictly and only to pick the key; the claims are
//! parsed only after the signature verified, so no attacker-chosen payload
//! reaches the JSON parser unauthenticated.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera::Store;
use tessera::record::SessionHandle;
use tessera::time::{Clock, Timestamp};

use crate::claims::{AccessClaims, Header, WireClaims};
use crate::error::{BoxError, Part, VerifyError};
use crate::jwks::PublicKeySet;
use crate::key::{Algorithm, Kid};
use crate::keys::{DEFAULT_LEEWAY, DEFAULT_LIFETIME};

/// The longest token the verifier looks at: 8 KiB. Longer input is
/// refused before it is decoded, so the work per request is bounded. Tokens
/// tessera issues are well under 2 KiB.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// What a [`Verifier`] requires of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifierConfig {
    /// The only accepted `iss`.
    pub issuer: String,
    /// The audience that `aud` must contain.
    pub audience: String,
    /// The accepted algorithms; default `[EdDSA]`. A token must also use the
    /// algorithm bound to its key.
    pub algorithms: Vec<Algorithm>,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`; default 30 s.
    pub leeway: Duration,
    /// The longest accepted `exp - iat`; default 10 minutes, the default
    /// issuing lifetime. Raise both together.
    pub max_lifetime: Duration,
}

impl VerifierConfig {
    /// A configuration accepting EdDSA with the default leeway and maximum
    /// lifetime.
    ///
    /// ```
    /// use tessera_jwt::{Algorithm, VerifierConfig};
    /// let config = VerifierConfig::new("https://auth.example", "https://api.example")
    ///     .algorithms([Algorithm::EdDSA, Algorithm::Es256]);
    /// assert_eq!(config.leeway.as_secs(), 30);
    /// ```
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            algorithms: vec![Algorithm::EdDSA],
            leeway: DEFAULT_LEEWAY,
            max_lifetime: DEFAULT_LIFETIME,
        }
    }

    /// Sets the accepted algorithms.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Sets the clock-skew leeway.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Sets the maximum accepted lifetime.
    pub fn max_lifetime(mut self, max_lifetime: Duration) -> Self {
        self.max_lifetime = max_lifetime;
        self
    }
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Its claims.
    pub claims: AccessClaims,
    /// The key that signed it.
    pub kid: Kid,
    /// The algorithm it was signed with.
    pub algorithm: Algorithm,
}

/// An optional per-session check, for callers that want an access token to
/// stop working as soon as its session is revoked, at the cost of one store
/// call per request. The default path ([`Verifier::verify`]) makes no such
/// call; see the crate docs on revocation.
///
/// Implemented for [`StoreSessionCheck`] and for any
/// `Fn(&AccessClaims) -> bool` (e.g. a lookup in a local revocation list).
#[async_trait]
pub trait SessionCheck: Send + Sync {
    /// Whether the session named by `claims.sid` is still active.
    ///
    /// # Errors
    ///
    /// Any failure to find out; the verifier then fails closed with
    /// [`VerifyError::SessionCheckFailed`].
    async fn is_active(&self, claims: &AccessClaims) -> Result<bool, BoxError>;
}

#[async_trait]
impl<F> SessionCheck for F
where
    F: Fn(&AccessClaims) -> bool + Send + Sync,
{
    async fn is_active(&self, claims: &AccessClaims) -> Result<bool, BoxError> {
        Ok(self(claims))
    }
}

/// A [`SessionCheck`] against a tessera [`Store`]: the session is active if
/// the user `sub` has a valid session with handle `sid`.
///
/// The `Store` trait has no lookup by handle, so this lists the user's
/// sessions: one store call, proportional to that user's session count.
pub struct StoreSessionCheck<S: ?Sized> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
}

impl<S: ?Sized> StoreSessionCheck<S> {
    /// A check against `store`, judging validity at `clock`'s time.
    pub fn new(store: Arc<S>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }
}

impl<S: ?Sized> fmt::Debug for StoreSessionCheck<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSessionCheck").finish_non_exhaustive()
    }
}

#[async_trait]
impl<S: Store + ?Sized> SessionCheck for StoreSessionCheck<S> {
    async fn is_active(&self, claims: &AccessClaims) -> Result<bool, BoxError> {
        let now = self.clock.now();
        let sessions = self.store.list_by_user(&claims.sub, now).await?;
        Ok(sessions
            .iter()
            .any(|r| r.handle == claims.sid && r.is_valid_at(now)))
    }
}

/// Verifies access tokens against a [`PublicKeySet`]. No store call, no
/// network call, no allocation proportional to anything but the (bounded)
/// input.
///
/// See [`Issuer`](crate::Issuer) for an end-to-end example.
pub struct Verifier {
    config: VerifierConfig,
    keys: PublicKeySet,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.config)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl Verifier {
    /// A verifier accepting tokens signed by `keys` that meet `config`.
    pub fn new(config: VerifierConfig, keys: PublicKeySet, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            keys,
            clock,
        }
    }

    /// Replaces the key set (after a rotation or a JWKS refresh).
    pub fn set_keys(&mut self, keys: PublicKeySet) {
        self.keys = keys;
    }

    /// Verifies a compact JWS access token: size, structure, `typ`, `alg`
    /// against the configuration and the key, `kid`, signature, then
    /// `exp`/`nbf`/`iat` with leeway, lifetime, `iss` and `aud`.
    ///
    /// # Errors
    ///
    /// The first check that failed, as a [`VerifyError`].
    pub fn verify(&self, token: impl AsRef<[u8]>) -> Result<VerifiedToken, VerifyError> {
        let token = token.as_ref();
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::TooLarge {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let mut parts = token.split(|b| *b == b'.');
        let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed(Part::Structure));
        };
        if header_b64.is_empty() || payload_b64.is_empty() {
            return Err(VerifyError::Malformed(Part::Structure));
        }

        // The base64 engine refuses padding and non-canonical trailing bits,
        // so each token has exactly one accepted spelling.
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| VerifyError::Malformed(Part::Header))?;
        let header: Header = serde_json::from_slice(&header_json)
            .map_err(|_| VerifyError::Malformed(Part::Header))?;
        if !header.has_access_token_type() {
            return Err(VerifyError::WrongType);
        }
        // `none`, HS*, RS*, PS* and every unknown name fail here, before any
        // key is looked at (RFC 8725 §3.1).
        let alg = Algorithm::from_name(&header.alg)
            .filter(|a| self.config.algorithms.contains(a))
            .ok_or(VerifyError::AlgorithmNotAllowed)?;
        let kid = header.kid.as_deref().ok_or(VerifyError::MissingKid)?;
        let entry = self.keys.get(kid).ok_or(VerifyError::UnknownKid)?;
        // The key decides the algorithm: an ES256 header cannot make an
        // Ed25519 key be used any other way, and vice versa.
        if entry.key.algorithm() != alg {
            return Err(VerifyError::AlgorithmMismatch);
        }
        let now = self.clock.now();
        if entry.published_until.is_some_and(|end| now >= end) {
            return Err(VerifyError::RetiredKey);
        }

        let sig = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .map_err(|_| VerifyError::Malformed(Part::Signature))?;
        if sig.len() != alg.signature_len() {
            return Err(VerifyError::Malformed(Part::Signature));
        }
        // The signing input is the header and payload exactly as received
        // (RFC 7515 §5.2), so any change to either breaks the signature.
        let signed_len = header_b64.len() + 1 + payload_b64.len();
        let signing_input = token
            .get(..signed_len)
            .ok_or(VerifyError::Malformed(Part::Structure))?;
        if !entry.key.verify(signing_input, &sig) {
            return Err(VerifyError::BadSignature);
        }

        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| VerifyError::Malformed(Part::Claims))?;
        let claims = serde_json::from_slice::<WireClaims>(&payload)
            .ok()
            .and_then(WireClaims::validate)
            .ok_or(VerifyError::Malformed(Part::Claims))?;
        self.check_claims(&claims, now, entry.retired_at)?;
        Ok(VerifiedToken {
            claims,
            kid: entry.kid.clone(),
            algorithm: alg,
        })
    }

    /// [`Verifier::verify`], then asks `check` whether the session is still
    /// active. Use it where a revoked session must lose access at once
    /// rather than at the token's expiry.
    ///
    /// # Errors
    ///
    /// As [`Verifier::verify`]; [`VerifyError::SessionRevoked`] if the check
    /// says no; [`VerifyError::SessionCheckFailed`] if it cannot answer.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use tessera::record::SessionHandle;
    /// # use tessera::time::{Clock, SystemClock};
    /// # use tessera_jwt::*;
    /// # let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    /// # let keys = KeySet::generate(Algorithm::EdDSA, clock.now())?;
    /// # let issuer = Issuer::new(IssuerConfig::new("i", "a"), &keys, clock.clone())?;
    /// # let verifier = Verifier::new(VerifierConfig::new("i", "a"), keys.public_keys(), clock);
    /// let revoked = SessionHandle::generate()?;
    /// let token = issuer.issue("user-1", &revoked)?;
    /// let check = move |c: &AccessClaims| c.sid != revoked;
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// let result = verifier.verify_with(token.as_str(), &check).await;
    /// assert!(matches!(result, Err(VerifyError::SessionRevoked)));
    /// # });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn verify_with(
        &self,
        token: impl AsRef<[u8]>,
        check: &(dyn SessionCheck + '_),
    ) -> Result<VerifiedToken, VerifyError> {
        let verified = self.verify(token)?;
        match check.is_active(&verified.claims).await {
            Ok(true) => Ok(verified),
            Ok(false) => Err(VerifyError::SessionRevoked),
            Err(e) => Err(VerifyError::SessionCheckFailed(e)),
        }
    }

    fn check_claims(
        &self,
        c: &AccessClaims,
        now: Timestamp,
        key_retired_at: Option<Timestamp>,
    ) -> Result<(), VerifyError> {
        let now = now.as_secs();
        let leeway = secs(self.config.leeway);
        // RFC 7519 §4.1.4: the current time must be before `exp`.
        if now >= c.exp.saturating_add(leeway) {
            return Err(VerifyError::Expired);
        }
        if now.saturating_add(leeway) < c.nbf {
            return Err(VerifyError::NotYetValid);
        }
        if c.iat > now.saturating_add(leeway) {
            return Err(VerifyError::IssuedInFuture);
        }
        let lifetime = c.exp.saturating_sub(c.iat);
        if lifetime <= 0 || lifetime > secs(self.config.max_lifetime) {
            return Err(VerifyError::LifetimeOutOfBounds);
        }
        // A key stops signing when it is retired; a token claiming a later
        // birth was not made by tessera's issuer.
        if key_retired_at.is_some_and(|r| c.iat > r.as_secs().saturating_add(leeway)) {
            return Err(VerifyError::RetiredKey);
        }
        if c.iss != self.config.issuer {
            return Err(VerifyError::WrongIssuer);
        }
        if !c.aud.contains(&self.config.audience) {
            return Err(VerifyError::WrongAudience);
        }
        Ok(())
    }
}

impl VerifiedToken {
    /// Shorthand for `&self.claims.sid`.
    pub fn session(&self) -> &SessionHandle {
        &self.claims.sid
    }
}
