//! The session cookie: secure attributes by default, and a parsing rule that
//! cannot be used for fixation.
//!
//! # Defaults (docs/design.md, invariant 6)
//!
//! `__Host-session=…; Max-Age=<remaining absolute lifetime>; Path=/; Secure;
//! HttpOnly; SameSite=Strict` — the example of the OWASP Session Management
//! Cheat Sheet, and what RFC 6265bis requires of a `__Host-` cookie (Secure,
//! `Path=/`, no Domain). `__Host-` means no sibling subdomain can set or
//! overwrite the cookie (ASVS 5.0 V3.3.3). Setting a Domain (to share with
//! subdomains) switches to the `__Secure-` prefix; plain-HTTP development
//! mode drops Secure and with it any prefix, and logs a warning.
//!
//! `Max-Age` is the remaining *absolute* lifetime, so the cookie never
//! outlives the session; the server still enforces both deadlines itself
//! (NIST SP 800-63B: cookie expiry must not be what enforces the timeout).
//!
//! # Parsing rule for duplicates
//!
//! A request may carry several cookies with our name: a browser keeps one
//! per (name, domain, path), so duplicates mean that someone set a second
//! one with another path or domain — typically an attacker on a sibling
//! subdomain planting their own session (fixation), which the `__Host-`
//! prefix prevents but custom configurations may allow. tessera therefore:
//!
//! 1. ignores values that are not well-formed tokens (junk costs nothing);
//! 2. accepts the value if all well-formed candidates are the same token;
//! 3. treats **two or more different** well-formed tokens as *no session*
//!    ([`Presented::Ambiguous`]) and reports it, rather than guessing which
//!    one is the victim's. The worst an attacker achieves is signing the
//!    victim out (which planting a cookie achieves anyway), never making
//!    the victim act inside the attacker's session.
//!
//! **Every** pair of every `Cookie` header is examined. A cut-off after
//! some number of pairs would let an attacker who can plant one cookie
//! (a sibling subdomain) put theirs first, pad the header with junk pairs
//! and push the victim's cookie past the cut-off, where the duplicate rule
//! never sees it. The work stays bounded all the same: it is one pass over
//! the header bytes, allocating nothing for pairs under other names, and the
//! HTTP server already bounds the size of a request head (hyper: about
//! 400 KiB; `tessera serve` refuses larger heads before any handler runs).

use std::time::Duration;

use cookie::{Cookie, SameSite};

use crate::token::SessionToken;

/// The SameSite attribute (RFC 6265bis). `None` is deliberately absent: a
/// session cookie sent on cross-site subrequests is a CSRF amplifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SameSitePolicy {
    /// Never sent on cross-site requests. Default.
    #[default]
    Strict,
    /// Sent on cross-site top-level navigations with safe methods, so links
    /// from other sites arrive signed in.
    Lax,
}

/// How the session cookie is named and which attributes it carries.
///
/// ```
/// use tessera::cookie::CookieConfig;
///
/// let config = CookieConfig::default();
/// assert_eq!(config.name(), "__Host-session");
///
/// let shared = CookieConfig::default().with_domain("example.com");
/// assert_eq!(shared.name(), "__Secure-session");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    base_name: String,
    name: String,
    domain: Option<String>,
    same_site: SameSitePolicy,
    insecure_http: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        let mut config = Self {
            base_name: String::from("session"),
            name: String::new(),
            domain: None,
            same_site: SameSitePolicy::Strict,
            insecure_http: false,
        };
        config.name = config.compute_name();
        config
    }
}

impl CookieConfig {
    /// Sets the name without prefix (default `session`, deliberately
    /// generic: OWASP advises against framework-revealing names).
    pub fn with_base_name(mut self, name: impl Into<String>) -> Self {
        self.base_name = name.into();
        self.name = self.compute_name();
        self
    }

    /// Shares the cookie with subdomains of `domain`. Switches the prefix to
    /// `__Secure-`; every subdomain can then read and overwrite the cookie.
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self.name = self.compute_name();
        self
    }

    /// Sets SameSite (default `Strict`).
    pub fn with_same_site(mut self, same_site: SameSitePolicy) -> Self {
        self.same_site = same_site;
        self
    }

    /// Development over plain HTTP: drops `Secure` (and so the prefix).
    /// Never use it in production; [`CookieConfig::warn_if_insecure`] logs a
    /// warning at start-up.
    pub fn insecure_http(mut self, insecure: bool) -> Self {
        self.insecure_http = insecure;
        self.name = self.compute_name();
        self
    }

    /// True in plain-HTTP development mode.
    pub fn is_insecure_http(&self) -> bool {
        self.insecure_http
    }

    /// Logs a warning if the configuration weakens the defaults. Call once
    /// at start-up (the axum layer does).
    pub fn warn_if_insecure(&self) {
        if self.insecure_http {
            tracing::warn!(
                cookie = %self.name,
                "plain-HTTP development mode: the session cookie is sent without Secure \
                 and without the __Host- prefix; never use this in production"
            );
        }
    }

    fn compute_name(&self) -> String {
        let prefix = match (self.insecure_http, &self.domain) {
            (true, _) => "",
            (false, None) => "__Host-",
            (false, Some(_)) => "__Secure-",
        };
        format!("{prefix}{}", self.base_name)
    }

    /// The full cookie name, prefix included.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn base(&self, value: &str) -> Cookie<'static> {
        let mut c = Cookie::new(self.name.clone(), value.to_owned());
        c.set_path("/");
        c.set_http_only(true);
        c.set_secure(!self.insecure_http);
        c.set_same_site(match self.same_site {
            SameSitePolicy::Strict => SameSite::Strict,
            SameSitePolicy::Lax => SameSite::Lax,
        });
        if let Some(domain) = &self.domain {
            c.set_domain(domain.clone());
        }
        c
    }

    /// The `Set-Cookie` value that installs `token` for `max_age` (the
    /// remaining absolute lifetime, capped at 400 days per RFC 6265bis).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tessera::cookie::CookieConfig;
    /// use tessera::token::SessionToken;
    ///
    /// let token = SessionToken::generate()?;
    /// let header = CookieConfig::default().set_cookie(&token, Duration::from_secs(3600));
    /// assert!(header.starts_with("__Host-session=tss_"));
    /// for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age=3600"] {
    ///     assert!(header.contains(attr), "{header}");
    /// }
    /// assert!(!header.contains("Domain"));
    /// # Ok::<(), tessera::error::RandomError>(())
    /// ```
    pub fn set_cookie(&self, token: &SessionToken, max_age: Duration) -> String {
        const MAX: Duration = Duration::from_secs(400 * 24 * 3600);
        let secs = max_age.min(MAX).as_secs();
        let mut c = self.base(token.expose());
        c.set_max_age(cookie::time::Duration::seconds(
            i64::try_from(secs).unwrap_or(i64::MAX),
        ));
        c.to_string()
    }

    /// The `Set-Cookie` value that deletes the cookie: empty value,
    /// `Max-Age=0`, an `Expires` in the past, and the same name, path and
    /// domain so the browser matches it (OWASP: clear on logout).
    ///
    /// ```
    /// let header = tessera::cookie::CookieConfig::default().clear_cookie();
    /// assert!(header.starts_with("__Host-session=;"));
    /// assert!(header.contains("Max-Age=0"));
    /// assert!(header.contains("Path=/"));
    /// ```
    pub fn clear_cookie(&self) -> String {
        let mut c = self.base("");
        c.set_max_age(cookie::time::Duration::ZERO);
        c.set_expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
        c.to_string()
    }

    /// Finds the session token among `Cookie` header values, applying the
    /// rule in the [module docs](self).
    ///
    /// ```
    /// use tessera::cookie::{CookieConfig, Presented};
    /// use tessera::token::SessionToken;
    ///
    /// let config = CookieConfig::default();
    /// let t = SessionToken::generate()?;
    /// let header = format!("theme=dark; __Host-session={}; junk", t.expose());
    /// assert_eq!(config.find_token([header.as_str()]), Presented::Token(t.clone()));
    ///
    /// let other = SessionToken::generate()?;
    /// let two = format!("__Host-session={}; __Host-session={}", t.expose(), other.expose());
    /// assert_eq!(config.find_token([two.as_str()]), Presented::Ambiguous);
    /// assert_eq!(config.find_token(["a=b"]), Presented::Absent);
    /// # Ok::<(), tessera::error::RandomError>(())
    /// ```
    pub fn find_token<I>(&self, headers: I) -> Presented
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        // Works on bytes, without decoding or copying the headers: a
        // non-ASCII byte in some other cookie cannot hide ours, and a
        // session value that is not ASCII is simply malformed (tokens are
        // ASCII). This runs on every request, so it allocates nothing
        // unless it finds a token.
        let name = self.name.as_bytes();
        let mut found: Option<SessionToken> = None;
        let mut malformed = false;
        for header in headers {
            let header = header.as_ref();
            // Pairs end at `;` (found with memchr: browsers send kilobytes
            // of other cookies), and only a pair that starts with our name
            // and `=` is read further.
            let ends = memchr::memchr_iter(b';', header).chain(std::iter::once(header.len()));
            let mut start = 0;
            for end in ends {
                let pair = header.get(start..end).unwrap_or_default();
                start = end + 1;
                let Some(value) = pair
                    .trim_ascii_start()
                    .strip_prefix(name)
                    .and_then(|rest| rest.trim_ascii_start().strip_prefix(b"="))
                else {
                    continue;
                };
                let value = unquote(value.trim_ascii());
                let parsed = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| SessionToken::parse(v).ok());
                match parsed {
                    None => malformed = true,
                    Some(token) => match &found {
                        None => found = Some(token),
                        Some(seen) if *seen == token => {}
                        Some(_) => return Presented::Ambiguous,
                    },
                }
            }
        }
        match (found, malformed) {
            (Some(token), _) => Presented::Token(token),
            (None, true) => Presented::Malformed,
            (None, false) => Presented::Absent,
        }
    }
}

/// Values may be sent quoted (RFC 6265 `cookie-value`); tokens never contain
/// quotes, so strip one pair.
fn unquote(v: &[u8]) -> &[u8] {
    v.strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(v)
}

/// What a request presented as its session credential.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Presented {
    /// Nothing.
    Absent,
    /// Only malformed values (refused without a store lookup).
    Malformed,
    /// Two or more different well-formed tokens: treated as no session.
    Ambiguous,
    /// One well-formed token (not yet checked against the store).
    Token(SessionToken),
}

impl Presented {
    /// The token, if exactly one well-formed token was presented.
    pub fn token(&self) -> Option<&SessionToken> {
        match self {
            Self::Token(t) => Some(t),
            _ => None,
        }
    }

    /// True if the request carried something in the session cookie (used to
    /// decide that a request is cookie-authenticated for CSRF purposes).
    pub fn is_present(&self) -> bool {
        !matches!(self, Self::Absent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_duplicates_are_accepted() {
        let config = CookieConfig::default();
        let t = SessionToken::generate().unwrap();
        let h = format!("__Host-session={0}; __Host-session={0}", t.expose());
        assert_eq!(config.find_token([h.as_str()]), Presented::Token(t));
    }

    #[test]
    fn junk_beside_a_valid_token_does_not_hide_it() {
        let config = CookieConfig::default();
        let t = SessionToken::generate().unwrap();
        let h = format!(
            "__Host-session=garbage; ;;=;__Host-session; x=\u{1F600}; __Host-session=\"{}\"",
            t.expose()
        );
        assert_eq!(config.find_token([h.as_str()]), Presented::Token(t));
    }

    #[test]
    fn only_junk_is_malformed() {
        let config = CookieConfig::default();
        assert_eq!(
            config.find_token(["__Host-session=tss_short"]),
            Presented::Malformed
        );
    }

    #[test]
    fn a_cookie_under_another_name_is_ignored() {
        let config = CookieConfig::default();
        let t = SessionToken::generate().unwrap();
        let h = format!("session={0}; __host-session={0}", t.expose());
        assert_eq!(config.find_token([h.as_str()]), Presented::Absent);
    }

    #[test]
    fn a_pair_is_ours_only_by_its_whole_name() {
        let config = CookieConfig::default();
        let t = SessionToken::generate().unwrap();
        // A longer name that starts with ours, and our name without `=`.
        let h = format!(
            "__Host-sessionx={0}; __Host-session; x=__Host-session={0}",
            t.expose()
        );
        assert_eq!(config.find_token([h.as_str()]), Presented::Absent);
        // Whitespace around the name and the `=` is not part of it.
        let h = format!("a=b;  __Host-session = {} ;c=d", t.expose());
        assert_eq!(config.find_token([h.as_str()]), Presented::Token(t));
    }

    #[test]
    fn a_token_behind_many_pairs_is_found() {
        let config = CookieConfig::default();
        let t = SessionToken::generate().unwrap();
        let mut h = "a=b; ".repeat(10_000);
        h.push_str(&format!("__Host-session={}", t.expose()));
        assert_eq!(config.find_token([h.as_str()]), Presented::Token(t));
    }

    #[test]
    fn a_planted_cookie_cannot_push_the_victims_out_of_sight() {
        let config = CookieConfig::default();
        let planted = SessionToken::generate().unwrap();
        let victim = SessionToken::generate().unwrap();
        let junk = "a=b; ".repeat(64);
        let h = format!(
            "__Host-session={}; {junk}__Host-session={}",
            planted.expose(),
            victim.expose()
        );
        assert_eq!(config.find_token([h.as_str()]), Presented::Ambiguous);
        // The same spread over several header lines.
        let first = format!("__Host-session={}; {junk}", planted.expose());
        let last = format!("__Host-session={}", victim.expose());
        assert_eq!(
            config.find_token([first.as_str(), junk.as_str(), last.as_str()]),
            Presented::Ambiguous
        );
    }

    #[test]
    fn raw_header_bytes_are_searched_without_decoding() {
        let config = CookieConfig::default();
        let t = SessionToken::generate().unwrap();
        // Invalid UTF-8 in another cookie does not hide ours.
        let mut h = b"x=\xff\xfe; __Host-session=".to_vec();
        h.extend_from_slice(t.expose().as_bytes());
        assert_eq!(
            config.find_token([h.as_slice()]),
            Presented::Token(t.clone())
        );
        // Invalid UTF-8 in our own value is malformed, not absent.
        assert_eq!(
            config.find_token([b"__Host-session=tss_\xff".as_slice()]),
            Presented::Malformed
        );
        // Quoted values (RFC 6265 cookie-value) are accepted.
        let quoted = format!("__Host-session=\"{}\"", t.expose());
        assert_eq!(config.find_token([quoted.as_str()]), Presented::Token(t));
    }

    #[test]
    fn insecure_mode_drops_secure_and_prefix() {
        let config = CookieConfig::default().insecure_http(true);
        assert_eq!(config.name(), "session");
        let t = SessionToken::generate().unwrap();
        let h = config.set_cookie(&t, Duration::from_secs(1));
        assert!(!h.contains("Secure"));
        assert!(h.contains("HttpOnly"));
    }

    #[test]
    fn domain_switches_to_secure_prefix_and_keeps_domain() {
        let config = CookieConfig::default().with_domain("example.com");
        let t = SessionToken::generate().unwrap();
        let h = config.set_cookie(&t, Duration::from_secs(1));
        assert!(h.starts_with("__Secure-session="));
        assert!(h.contains("Domain=example.com"));
        assert!(config.clear_cookie().contains("Domain=example.com"));
    }
}
