//! Issuing access tokens.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera::record::SessionHandle;
use tessera::time::{Clock, Timestamp};

use crate::claims::{ACCESS_TOKEN_TYPE, AccessClaims, Audience, Header, MAX_CLAIM_LEN};
use crate::error::IssueError;
use crate::key::{Algorithm, Kid, PrivateKey};
use crate::keys::{DEFAULT_LIFETIME, KeySet};

/// What an [`Issuer`] writes into every token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuerConfig {
    /// `iss`: this service's identifier, usually its https URL.
    pub issuer: String,
    /// `aud`: the resource server the tokens are for.
    pub audience: String,
    /// `client_id`, if tokens are issued to a known OAuth client.
    pub client_id: Option<String>,
    /// Token lifetime; default [`DEFAULT_LIFETIME`] (10 minutes). Whole
    /// seconds; at least 1 s and at most the key set's retention.
    pub lifetime: Duration,
}

impl IssuerConfig {
    /// A configuration with the default lifetime and no `client_id`.
    ///
    /// ```
    /// use tessera_jwt::{DEFAULT_LIFETIME, IssuerConfig};
    /// let config = IssuerConfig::new("https://auth.example", "https://api.example");
    /// assert_eq!(config.lifetime, DEFAULT_LIFETIME);
    /// ```
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            client_id: None,
            lifetime: DEFAULT_LIFETIME,
        }
    }

    /// Sets the lifetime.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Sets the `client_id` claim.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }
}

/// Signs access tokens with the active key of a [`KeySet`].
///
/// The issuer keeps a copy of the key that was active when it was built;
/// after a rotation, build a new one.
///
/// ```
/// use std::sync::Arc;
/// use tessera::record::SessionHandle;
/// use tessera::time::{Clock, SystemClock};
/// use tessera_jwt::{Algorithm, Issuer, IssuerConfig, KeySet, Verifier, VerifierConfig};
///
/// let clock: Arc<dyn Clock> = Arc::new(SystemClock);
/// let keys = KeySet::generate(Algorithm::EdDSA, clock.now())?;
/// let issuer = Issuer::new(
///     IssuerConfig::new("https://auth.example", "https://api.example"),
///     &keys,
///     clock.clone(),
/// )?;
/// let sid = SessionHandle::generate()?;
/// let token = issuer.issue("user-42", &sid)?;
///
/// let verifier = Verifier::new(
///     VerifierConfig::new("https://auth.example", "https://api.example"),
///     keys.public_keys(),
///     clock,
/// );
/// let verified = verifier.verify(token.as_str())?;
/// assert_eq!(verified.claims.sub, "user-42");
/// assert_eq!(verified.claims.sid, sid);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Issuer {
    config: IssuerConfig,
    kid: Kid,
    key: PrivateKey,
    lifetime_secs: i64,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("config", &self.config)
            .field("kid", &self.kid)
            .field("algorithm", &self.key.algorithm())
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn check_claim(value: &str, what: &'static str) -> Result<(), IssueError> {
    if value.is_empty() || value.len() > MAX_CLAIM_LEN {
        return Err(IssueError::InvalidClaim(what));
    }
    Ok(())
}

impl Issuer {
    /// An issuer signing with the active key of `keys`.
    ///
    /// # Errors
    ///
    /// [`IssueError::NoSigningKey`] if `keys` has no active key;
    /// [`IssueError::LifetimeOutOfBounds`] if the lifetime is under one
    /// second or longer than the key set's retention (tokens would outlive
    /// the publication of their key); [`IssueError::InvalidClaim`] for an
    /// empty or over-long issuer, audience or client id.
    pub fn new(
        config: IssuerConfig,
        keys: &KeySet,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, IssueError> {
        check_claim(&config.issuer, "issuer")?;
        check_claim(&config.audience, "audience")?;
        if let Some(client_id) = &config.client_id {
            check_claim(client_id, "client_id")?;
        }
        let lifetime_secs = i64::try_from(config.lifetime.as_secs())
            .map_err(|_| IssueError::LifetimeOutOfBounds)?;
        if lifetime_secs < 1 || config.lifetime > keys.retention() {
            return Err(IssueError::LifetimeOutOfBounds);
        }
        let entry = keys.current_entry().ok_or(IssueError::NoSigningKey)?;
        Ok(Self {
            config,
            kid: entry.info.kid.clone(),
            key: entry.private.clone(),
            lifetime_secs,
            clock,
        })
    }

    /// The id of the key this issuer signs with.
    pub fn kid(&self) -> &Kid {
        &self.kid
    }

    /// The algorithm this issuer signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// Issues a token for user `sub` in session `sid`, valid from now for
    /// the configured lifetime.
    ///
    /// # Errors
    ///
    /// [`IssueError::InvalidClaim`] for an empty or over-long `sub`;
    /// [`IssueError::Random`] if the OS CSPRNG fails.
    pub fn issue(&self, sub: &str, sid: &SessionHandle) -> Result<AccessToken, IssueError> {
        self.issue_until(sub, sid, Timestamp::from_millis(i64::MAX))
    }

    /// Issues a token like [`issue`](Self::issue), but never valid past
    /// `not_after`: `exp` is the earlier of now + lifetime and `not_after`
    /// (rounded down to the second). Pass the session's absolute deadline,
    /// so an access token cannot outlive the session it names — a verifier
    /// that makes no store call would otherwise accept it for up to one
    /// lifetime after the session's absolute timeout (ASVS 5.0 V7.3.2).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use tessera::record::SessionHandle;
    /// # use tessera::time::{Clock, ManualClock, Timestamp};
    /// # use tessera_jwt::{Algorithm, Issuer, IssuerConfig, KeySet};
    /// let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
    /// let keys = KeySet::generate(Algorithm::EdDSA, clock.now())?;
    /// let issuer = Issuer::new(IssuerConfig::new("https://auth.example", "api"), &keys, clock.clone())?;
    /// let ends = Timestamp::from_millis(1_700_000_060_000); // one minute from now
    /// let token = issuer.issue_until("alice", &SessionHandle::generate()?, ends)?;
    /// assert_eq!(token.expires_at(), ends);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`issue`](Self::issue), and [`IssueError::AlreadyEnded`] if
    /// `not_after` is not after the current second (the token would be born
    /// expired).
    pub fn issue_until(
        &self,
        sub: &str,
        sid: &SessionHandle,
        not_after: Timestamp,
    ) -> Result<AccessToken, IssueError> {
        check_claim(sub, "subject")?;
        let iat = self.clock.now().as_secs();
        let exp = iat
            .saturating_add(self.lifetime_secs)
            .min(not_after.as_secs());
        if exp <= iat {
            return Err(IssueError::AlreadyEnded);
        }
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|_| IssueError::Random)?;
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: sub.to_owned(),
            aud: Audience::One(self.config.audience.clone()),
            client_id: self.config.client_id.clone(),
            sid: sid.clone(),
            iat,
            nbf: iat,
            exp,
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        let header = Header {
            alg: self.key.algorithm().name().to_owned(),
            typ: Some(ACCESS_TOKEN_TYPE.to_owned()),
            kid: Some(self.kid.as_str().to_owned()),
        };
        let mut token = String::with_capacity(512);
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(&header)?, &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(&claims)?, &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(AccessToken {
            token,
            claims,
            kid: self.kid.clone(),
        })
    }
}

/// A freshly issued access token and its claims.
///
/// The token is a bearer credential: `Debug` does not show it. Send it with
/// `Authorization: Bearer` (RFC 6750), never in a URL.
pub struct AccessToken {
    token: String,
    /// The claims inside the token.
    pub claims: AccessClaims,
    kid: Kid,
}

impl AccessToken {
    /// The compact JWS text.
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// The compact JWS text, consuming the value.
    pub fn into_string(self) -> String {
        self.token
    }

    /// The id of the key that signed it.
    pub fn kid(&self) -> &Kid {
        &self.kid
    }

    /// When the token expires.
    pub fn expires_at(&self) -> Timestamp {
        Timestamp::from_millis(self.claims.exp.saturating_mul(1000))
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("claims", &self.claims)
            .field("kid", &self.kid)
            .finish()
    }
}
