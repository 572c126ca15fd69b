//! The device side of DBSC without a browser: a P-256 key that signs
//! `dbsc+jwt` proofs exactly as a browser does (W3C DBSC "session
//! registration / refresh JWT"). Chromium exercises DBSC only with a TPM,
//! so tests — and anyone checking a DBSC server — use this instead.
//!
//! ```
//! use tessera::testkit::dbsc_sim::DeviceKey;
//! let key = DeviceKey::generate();
//! let proof = key.registration_proof("challenge-1");
//! assert_eq!(proof.split('.').count(), 3);
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};

/// A device key (ES256), as a TPM would hold it.
#[derive(Clone)]
pub struct DeviceKey {
    key: SigningKey,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKey").finish_non_exhaustive()
    }
}

impl DeviceKey {
    /// A new random key.
    ///
    /// # Panics
    ///
    /// If the OS CSPRNG fails.
    #[allow(clippy::expect_used)]
    pub fn generate() -> Self {
        loop {
            let mut raw = [0u8; 32];
            getrandom::fill(&mut raw).expect("OS CSPRNG");
            // A random 256-bit string is a valid scalar except with
            // probability ~2^-32; retry then.
            if let Ok(key) = SigningKey::from_bytes(&raw.into()) {
                return Self { key };
            }
        }
    }

    /// The public JWK (`kty`, `crv`, `x`, `y`).
    pub fn jwk(&self) -> Value {
        let point = self.key.verifying_key().to_encoded_point(false);
        let b64 = |b: Option<&p256::FieldBytes>| b.map(|b| URL_SAFE_NO_PAD.encode(b));
        json!({"kty": "EC", "crv": "P-256", "x": b64(point.x()), "y": b64(point.y())})
    }

    /// A registration proof: `jwk` in the header, `jti` = `challenge`.
    pub fn registration_proof(&self, challenge: &str) -> String {
        self.sign(
            json!({"typ": "dbsc+jwt", "alg": "ES256", "jwk": self.jwk()}),
            json!({"jti": challenge}),
        )
    }

    /// A refresh proof: no `jwk`, `jti` = `challenge`.
    pub fn refresh_proof(&self, challenge: &str) -> String {
        self.sign(
            json!({"typ": "dbsc+jwt", "alg": "ES256"}),
            json!({"jti": challenge}),
        )
    }

    /// Signs any header and claims (for hostile tests: wrong `typ`,
    /// `alg`, extra claims).
    pub fn sign(&self, header: Value, claims: Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{h}.{p}");
        let sig: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }
}

/// The `Secure-Session-Response` value for a proof (an sf-string).
pub fn response_field(jwt: &str) -> String {
    format!("\"{jwt}\"")
}

/// The challenge in a `Secure-Session-Registration` or
/// `Secure-Session-Challenge` value.
pub fn challenge_of(field: &str) -> Option<String> {
    // Registration: `(ES256 RS256);path="…";challenge="…"`;
    // challenge: `"…";id="…"`.
    if let Some(rest) = field.split(";challenge=\"").nth(1) {
        return rest.split('"').next().map(str::to_owned);
    }
    field
        .strip_prefix('"')?
        .split('"')
        .next()
        .map(str::to_owned)
}

/// A request the [`Device`] wants sent: always a `POST` to `path` with
/// these fields (plus the browser's cookies, which the caller keeps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRequest {
    /// The path to `POST` to (the registration path or the refresh URL).
    pub path: String,
    /// Header fields to send, lower-case names.
    pub headers: Vec<(String, String)>,
}

/// What a refresh answer means to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshStep {
    /// 200 with a new bound cookie: retry the deferred requests.
    Refreshed,
    /// 403 with a challenge: send [`Device::refresh_request`] again (it now
    /// carries a proof).
    Challenged,
    /// `{"continue": false}` or another 4xx: the device session is over.
    Ended,
    /// Anything else (a 5xx, a redirect, a malformed answer): the browser
    /// gives the refresh up and tries again later (`Secure-Session-Skipped`).
    Skipped,
}

/// A browser's DBSC client, without a browser and without I/O: it reads
/// the responses the caller got and says which requests to send, following
/// the protocol of W3C DBSC (registration offer → registration with the
/// key → bound cookie → refresh: challenge, proof, new cookie). Plug it
/// into any HTTP client to test a DBSC server; tessera's own tests drive
/// `tessera serve` with it (`crates/tessera-server/tests/it/dbsc.rs`).
///
/// ```
/// use tessera::testkit::dbsc_sim::{Device, DeviceKey, RefreshStep};
/// let mut device = Device::new(DeviceKey::generate());
/// // A sign-in response offered registration:
/// device.observe_headers([(
///     "secure-session-registration",
///     r#"(ES256 RS256);path="/dbsc/register";challenge="c1""#,
/// )]);
/// let req = device.registration_request().ok_or("registration was offered")?;
/// assert_eq!(req.path, "/dbsc/register");
/// // The server bound the session and set the bound cookie:
/// let config = r#"{"session_identifier":"s1","refresh_url":"/dbsc/refresh",
///   "credentials":[{"type":"cookie","name":"dbsc","attributes":"Path=/; HttpOnly; SameSite=Strict"}]}"#;
/// let bound = device.on_registration_response(200, [("set-cookie", "dbsc=v1; Max-Age=600; Path=/; HttpOnly; SameSite=Strict")], config);
/// assert_eq!(bound, Ok(()));
/// assert_eq!(device.bound_cookie(), Some(("dbsc", "v1")));
/// // Later: a refresh without proof gets a challenge, then one with.
/// let first = device.refresh_request().ok_or("the session is bound")?;
/// assert!(first.headers.iter().all(|(n, _)| n != "secure-session-response"));
/// let step = device.on_refresh_response(403, [("secure-session-challenge", r#""c2";id="s1""#)], "");
/// assert_eq!(step, RefreshStep::Challenged);
/// let second = device.refresh_request().ok_or("the session is bound")?;
/// assert!(second.headers.iter().any(|(n, _)| n == "secure-session-response"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Device {
    key: DeviceKey,
    legacy: bool,
    /// Registration offer: (path, challenge).
    offer: Option<(String, String)>,
    session_id: Option<String>,
    refresh_url: Option<String>,
    /// (name, value) of the bound cookie, and its attributes as the
    /// session config announced them.
    cookie: Option<(String, String)>,
    cookie_name: Option<String>,
    cookie_attributes: Option<String>,
    challenge: Option<String>,
}

/// Why a registration answer is not what the protocol requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// Not 200: the server refused the registration.
    Refused(u16),
    /// The body is not a session config.
    BadConfig(String),
    /// No `Set-Cookie` for the credential the config names.
    NoCookie,
    /// The cookie's attributes differ from the config's (Chromium compares
    /// them exactly).
    AttributesDiffer {
        /// In `Set-Cookie` (without `Max-Age`).
        set_cookie: String,
        /// In the session config.
        config: String,
    },
}

impl Device {
    /// A device holding `key`, speaking the current field names.
    pub fn new(key: DeviceKey) -> Self {
        Self {
            key,
            legacy: false,
            offer: None,
            session_id: None,
            refresh_url: None,
            cookie: None,
            cookie_name: None,
            cookie_attributes: None,
            challenge: None,
        }
    }

    /// Speak the legacy `Sec-Session-*` names (origin-trial browsers).
    #[must_use]
    pub fn with_legacy_names(mut self, legacy: bool) -> Self {
        self.legacy = legacy;
        self
    }

    /// The key.
    pub fn key(&self) -> &DeviceKey {
        &self.key
    }

    /// The DBSC session id, once registered.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The bound cookie (name, value), once set.
    pub fn bound_cookie(&self) -> Option<(&str, &str)> {
        self.cookie.as_ref().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// What malware that copied this browser's cookie jar holds: the same
    /// cookies and DBSC session id, but not the key (it stays in the
    /// hardware), so its proofs are signed by `key`.
    pub fn stolen_by(&self, key: DeviceKey) -> Self {
        Self {
            key,
            challenge: None,
            offer: None,
            ..self.clone()
        }
    }

    /// Forgets the bound cookie (the browser's copy expired or was lost).
    pub fn drop_bound_cookie(&mut self) {
        self.cookie = None;
    }

    fn field(&self, current: &str, legacy: &str) -> String {
        if self.legacy { legacy } else { current }.to_owned()
    }

    /// Reads any response's fields: a registration offer (current or legacy
    /// name).
    pub fn observe_headers<'a, I>(&mut self, headers: I)
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            if name == "secure-session-registration" || name == "sec-session-registration" {
                let path = value
                    .split(";path=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next());
                if let (Some(path), Some(challenge)) = (path, challenge_of(value)) {
                    self.offer = Some((path.to_owned(), challenge));
                }
            }
        }
    }

    /// The registration `POST` for the last offer, proof signed with the
    /// key; `None` without an offer. The offer is used up.
    pub fn registration_request(&mut self) -> Option<DeviceRequest> {
        let (path, challenge) = self.offer.take()?;
        let proof = self.key.registration_proof(&challenge);
        Some(DeviceRequest {
            path,
            headers: vec![(
                self.field("secure-session-response", "sec-session-response"),
                response_field(&proof),
            )],
        })
    }

    /// Reads the registration answer: the session config and the bound
    /// cookie, whose attributes must equal the config's.
    ///
    /// # Errors
    ///
    /// [`DeviceError`] when the answer breaks the protocol.
    pub fn on_registration_response<'a, I>(
        &mut self,
        status: u16,
        headers: I,
        body: &str,
    ) -> Result<(), DeviceError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        if status != 200 {
            return Err(DeviceError::Refused(status));
        }
        let config: Value =
            serde_json::from_str(body).map_err(|e| DeviceError::BadConfig(e.to_string()))?;
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let credential = config.get("credentials").and_then(|c| c.get(0));
        let (Some(id), Some(url), Some(name), Some(attributes)) = (
            config.get("session_identifier").and_then(text),
            config.get("refresh_url").and_then(text),
            credential.and_then(|c| c.get("name")).and_then(text),
            credential.and_then(|c| c.get("attributes")).and_then(text),
        ) else {
            return Err(DeviceError::BadConfig(body.to_owned()));
        };
        self.session_id = Some(id);
        self.refresh_url = Some(url);
        self.cookie_name = Some(name);
        self.cookie_attributes = Some(attributes);
        if !self.take_cookie(headers)? {
            return Err(DeviceError::NoCookie);
        }
        Ok(())
    }

    /// Takes the bound cookie from `Set-Cookie` fields, checking its
    /// attributes. True if one was set.
    fn take_cookie<'a, I>(&mut self, headers: I) -> Result<bool, DeviceError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let (Some(name), Some(attributes)) = (&self.cookie_name, &self.cookie_attributes) else {
            return Ok(false);
        };
        for (field, value) in headers {
            if !field.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let (pair, rest) = value.split_once("; ").unwrap_or((value, ""));
            let Some((cookie, cookie_value)) = pair.split_once('=') else {
                continue;
            };
            if cookie != name {
                continue;
            }
            let without_max_age: Vec<&str> = rest
                .split("; ")
                .filter(|a| !a.starts_with("Max-Age="))
                .collect();
            let set = without_max_age.join("; ");
            if set != *attributes {
                return Err(DeviceError::AttributesDiffer {
                    set_cookie: set,
                    config: attributes.clone(),
                });
            }
            self.cookie = Some((name.clone(), cookie_value.to_owned()));
            return Ok(true);
        }
        Ok(false)
    }

    /// The refresh `POST`: the DBSC session id, and a proof when a
    /// challenge is known (it is used up). `None` before registration.
    pub fn refresh_request(&mut self) -> Option<DeviceRequest> {
        let path = self.refresh_url.clone()?;
        let id = self.session_id.as_deref()?;
        let mut headers = vec![(
            self.field("sec-secure-session-id", "sec-session-id"),
            format!("\"{id}\""),
        )];
        if let Some(challenge) = self.challenge.take() {
            headers.push((
                self.field("secure-session-response", "sec-session-response"),
                response_field(&self.key.refresh_proof(&challenge)),
            ));
        }
        Some(DeviceRequest { path, headers })
    }

    /// Reads a refresh answer.
    pub fn on_refresh_response<'a, I>(&mut self, status: u16, headers: I, body: &str) -> RefreshStep
    where
        I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
    {
        let ended = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("continue").and_then(Value::as_bool))
            == Some(false);
        match status {
            _ if ended => {
                self.cookie = None;
                self.session_id = None;
                RefreshStep::Ended
            }
            200 => match self.take_cookie(headers) {
                Ok(true) => RefreshStep::Refreshed,
                _ => RefreshStep::Skipped,
            },
            403 => {
                let id = self.session_id.clone().unwrap_or_default();
                let challenge = headers.into_iter().find_map(|(name, value)| {
                    let name = name.to_ascii_lowercase();
                    (name == "secure-session-challenge" || name == "sec-session-challenge")
                        .then_some(value)
                        .filter(|v| v.ends_with(&format!(";id=\"{id}\"")))
                        .and_then(challenge_of)
                });
                match challenge {
                    Some(c) => {
                        self.challenge = Some(c);
                        RefreshStep::Challenged
                    }
                    None => RefreshStep::Skipped,
                }
            }
            400..=499 => {
                self.cookie = None;
                self.session_id = None;
                RefreshStep::Ended
            }
            _ => RefreshStep::Skipped,
        }
    }
}
