//! Finding the session credential of a request: the cookie, or (when the
//! layer accepts it) an `Authorization: Bearer tss_…` header.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use tessera::cookie::{CookieConfig, Presented};
use tessera::guard::Credential;
use tessera::token::{SessionToken, TokenKind};

/// Bearer values examined per request; the rest are ignored.
const MAX_AUTHORIZATION_HEADERS: usize = 8;

/// How the request presented its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// The session cookie (or nothing at all).
    Cookie,
    /// `Authorization: Bearer tss_…`: no ambient authority, so no CSRF
    /// check and no `Set-Cookie`.
    Bearer,
}

impl Via {
    /// The credential kind the [`tessera::guard`] decides on.
    pub(crate) fn credential(self, presented: &Presented) -> Credential {
        match self {
            Self::Bearer => Credential::Bearer,
            Self::Cookie if presented.is_present() => Credential::Cookie,
            Self::Cookie => Credential::Absent,
        }
    }
}

/// Finds the credential. A bearer session token, when accepted, wins over
/// any cookie: the request then does not use the cookie at all, so its
/// ambient authority cannot be abused and the CSRF exemption is sound.
///
/// `Authorization` values whose scheme is not `Bearer`, or whose bearer
/// value does not start with the session-token prefix (a JWT meant for
/// another layer, say), are not ours and leave the cookie in charge.
pub(crate) fn find(
    cookie: &CookieConfig,
    accept_bearer: bool,
    headers: &HeaderMap,
) -> (Presented, Via) {
    if accept_bearer {
        if let Some(presented) = find_bearer(headers) {
            return (presented, Via::Bearer);
        }
    }
    // The raw header bytes: `find_token` needs no decoding, so a non-ASCII
    // byte in some other cookie cannot hide ours, and nothing is copied.
    let values = headers.get_all(COOKIE).iter().map(|v| v.as_bytes());
    (cookie.find_token(values), Via::Cookie)
}

/// Finds a request's session credential exactly as [`SessionLayer`] does:
/// with `accept_bearer`, a bearer session token wins over any cookie;
/// otherwise the session cookie, with the duplicate rule of
/// [`tessera::cookie`]. Returns what was presented and how, as the
/// [`tessera::guard`] needs it.
///
/// For servers that decide on requests they do not receive themselves
/// (`tessera serve`'s request check for the Node and Python clients).
///
/// ```
/// use http::{HeaderMap, HeaderValue, header::COOKIE};
/// use tessera::cookie::{CookieConfig, Presented};
/// use tessera::guard::Credential;
/// use tessera::token::SessionToken;
/// let token = SessionToken::generate()?;
/// let mut headers = HeaderMap::new();
/// headers.insert(COOKIE, HeaderValue::from_str(&format!("theme=dark; __Host-session={}", token.expose()))?);
/// let (presented, credential) = tessera_axum::find_credential(&CookieConfig::default(), false, &headers);
/// assert_eq!(presented, Presented::Token(token));
/// assert_eq!(credential, Credential::Cookie);
/// assert_eq!(tessera_axum::find_credential(&CookieConfig::default(), false, &HeaderMap::new()).1,
///            Credential::Absent);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`SessionLayer`]: crate::SessionLayer
pub fn find_credential(
    cookie: &CookieConfig,
    accept_bearer: bool,
    headers: &HeaderMap,
) -> (Presented, Credential) {
    let (presented, via) = find(cookie, accept_bearer, headers);
    let credential = via.credential(&presented);
    (presented, credential)
}

/// The session token presented as `Authorization: Bearer tss_…`, if any:
/// `Token` for one token (repeated values of the same token count once),
/// `Malformed` for a `tss_` value that does not parse (refuse it without a
/// store call), `Ambiguous` for two different tokens (as for duplicate
/// cookies: never guess which one the client meant). Values with another
/// scheme, or without the `tss_` prefix, are not session tokens and are
/// ignored; at most eight `Authorization` values are examined.
///
/// For servers that read the credential without [`SessionLayer`]
/// (`tessera serve`'s forward auth).
///
/// ```
/// use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
/// use tessera::cookie::Presented;
/// use tessera::token::SessionToken;
/// let token = SessionToken::generate()?;
/// let mut headers = HeaderMap::new();
/// headers.append(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {}", token.expose()))?);
/// assert!(matches!(tessera_axum::find_bearer(&headers), Some(Presented::Token(_))));
/// let other = SessionToken::generate()?;
/// headers.append(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {}", other.expose()))?);
/// assert!(matches!(tessera_axum::find_bearer(&headers), Some(Presented::Ambiguous)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`SessionLayer`]: crate::SessionLayer
pub fn find_bearer(headers: &HeaderMap) -> Option<Presented> {
    let prefix = <tessera::token::Session as TokenKind>::PREFIX;
    let mut found: Option<Presented> = None;
    for value in headers
        .get_all(AUTHORIZATION)
        .iter()
        .take(MAX_AUTHORIZATION_HEADERS)
    {
        let value = String::from_utf8_lossy(value.as_bytes());
        let Some((scheme, credential)) = value.trim().split_once(' ') else {
            continue;
        };
        // RFC 9110 §11.1: the scheme is case-insensitive.
        if !scheme.eq_ignore_ascii_case("bearer") {
            continue;
        }
        let credential = credential.trim();
        if !credential.starts_with(prefix) {
            continue;
        }
        let this = match SessionToken::parse(credential) {
            Ok(token) => Presented::Token(token),
            // Ours by its prefix but broken: refused without a store call.
            Err(_) => Presented::Malformed,
        };
        found = Some(match (found, this) {
            (None, this) => this,
            (Some(Presented::Token(a)), Presented::Token(b)) if a == b => Presented::Token(a),
            (Some(Presented::Token(a)), Presented::Malformed)
            | (Some(Presented::Malformed), Presented::Token(a)) => Presented::Token(a),
            (Some(Presented::Malformed), Presented::Malformed) => Presented::Malformed,
            // Two different tokens: as for cookies, never guess.
            _ => Presented::Ambiguous,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&http::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn bearer_wins_over_cookie_when_accepted() {
        let config = CookieConfig::default();
        let a = SessionToken::generate().unwrap();
        let b = SessionToken::generate().unwrap();
        let h = headers(&[
            (&COOKIE, &format!("__Host-session={}", a.expose())),
            (&AUTHORIZATION, &format!("Bearer {}", b.expose())),
        ]);
        assert_eq!(find(&config, true, &h), (Presented::Token(b), Via::Bearer));
        assert_eq!(find(&config, false, &h), (Presented::Token(a), Via::Cookie));
    }

    #[test]
    fn foreign_bearer_values_leave_the_cookie_in_charge() {
        let config = CookieConfig::default();
        let h = headers(&[(&AUTHORIZATION, "Bearer eyJhbGciOi.x.y")]);
        assert_eq!(find(&config, true, &h), (Presented::Absent, Via::Cookie));
        let h = headers(&[(&AUTHORIZATION, "bearer tss_broken")]);
        assert_eq!(find(&config, true, &h), (Presented::Malformed, Via::Bearer));
    }

    #[test]
    fn two_different_bearer_tokens_are_ambiguous() {
        let config = CookieConfig::default();
        let a = SessionToken::generate().unwrap();
        let b = SessionToken::generate().unwrap();
        let h = headers(&[
            (&AUTHORIZATION, &format!("Bearer {}", a.expose())),
            (&AUTHORIZATION, &format!("Bearer {}", b.expose())),
        ]);
        assert_eq!(find(&config, true, &h), (Presented::Ambiguous, Via::Bearer));
    }

    #[test]
    fn non_ascii_in_another_cookie_does_not_hide_ours() {
        let config = CookieConfig::default();
        let a = SessionToken::generate().unwrap();
        let mut h = HeaderMap::new();
        let raw = format!("x=\u{e9}t\u{e9}; __Host-session={}", a.expose());
        h.insert(COOKIE, HeaderValue::from_bytes(raw.as_bytes()).unwrap());
        assert_eq!(find(&config, false, &h), (Presented::Token(a), Via::Cookie));
    }
}
