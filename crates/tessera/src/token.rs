//! Opaque secret tokens: session tokens, and the hash that stores see.
//!
//! A token is 256 bits from the operating system's CSPRNG (ASVS 5.0 V7.2.3
//! asks for at least 128), written as a fixed, recognisable prefix followed by
//! the URL-safe base64 of the secret and a CRC-32 checksum:
//!
//! ```text
//! tss_ 3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
//! ^^^^ ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
//! kind base64url( 32 random bytes ‖ crc32(prefix ‖ bytes) )
//! ```
//!
//! The prefix lets secret scanners find leaked tokens; the checksum lets
//! [`Token::parse`] refuse typos, truncations and forged-looking values
//! *before* any store lookup, so garbage never costs a database round trip.
//! The checksum is not a security boundary: an attacker can compute it. What
//! protects a session is the 256 bits of entropy.
//!
//! Stores never see a token. They see its [`TokenHash`], a SHA-256 of the
//! secret (with the kind prefix as domain separator), so a dump of any store
//! yields nothing that authenticates (docs/design.md, invariant 2). A plain hash is
//! enough because the input has 256 bits of entropy: there is nothing to
//! brute-force, so a slow password hash would only cost CPU.

use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::random::RandomError;

/// Number of random bytes in every token.
pub const SECRET_LEN: usize = 32;
const CHECKSUM_LEN: usize = 4;
/// Length of the base64 part: 36 bytes encode to exactly 48 characters.
const BODY_LEN: usize = 48;

/// The kind of a token: its prefix and hash domain.
///
/// Sealed: the kinds are part of tessera's wire format.
pub trait TokenKind: sealed::Sealed + Send + Sync + 'static {
    /// The literal prefix, including the trailing underscore.
    const PREFIX: &'static str;
}

mod sealed {
    pub trait Sealed {}
}

/// Marker for session tokens (`tss_…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Session;
impl sealed::Sealed for Session {}
impl TokenKind for Session {
    const PREFIX: &'static str = "tss_";
}

/// Marker for refresh tokens (`tsr_…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Refresh;
impl sealed::Sealed for Refresh {}
impl TokenKind for Refresh {
    const PREFIX: &'static str = "tsr_";
}

/// Marker for API keys (`tsk_…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKey;
impl sealed::Sealed for ApiKey {}
impl TokenKind for ApiKey {
    const PREFIX: &'static str = "tsk_";
}

/// A session token: what travels in the cookie or the `Authorization` header.
pub type SessionToken = Token<Session>;
/// A refresh token.
pub type RefreshToken = Token<Refresh>;
/// An API key for the server's `/v1` API.
pub type ApiKeyToken = Token<ApiKey>;

/// A secret token of kind `K`.
///
/// It can only be made by [`Token::generate`] or by a successful
/// [`Token::parse`]. `Debug` never prints the secret, and equality is
/// constant-time.
///
/// ```
/// use tessera::token::SessionToken;
///
/// let token = SessionToken::generate()?;
/// let parsed = SessionToken::parse(token.expose())?;
/// assert_eq!(token, parsed);
/// assert_eq!(token.hash(), parsed.hash());
/// assert!(SessionToken::parse("tss_not-a-token").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Token<K: TokenKind> {
    secret: [u8; SECRET_LEN],
    encoded: Encoded,
    kind: PhantomData<K>,
}

/// Room for the longest encoded token (prefix plus 48 base64 characters).
const MAX_ENCODED_LEN: usize = 64;

/// The encoded token kept inline: parsing a presented token, which happens
/// on every request, makes no heap allocation for it.
#[derive(Clone, Copy)]
struct Encoded {
    bytes: [u8; MAX_ENCODED_LEN],
    len: usize,
}

impl Encoded {
    /// `prefix` then `body`; both are ASCII and fit (checked by
    /// [`Token::FITS`] at compile time).
    fn new(prefix: &str, body: &[u8]) -> Self {
        let mut bytes = [0u8; MAX_ENCODED_LEN];
        let len = prefix.len() + body.len();
        let (head, rest) = bytes.split_at_mut(prefix.len());
        head.copy_from_slice(prefix.as_bytes());
        if let Some(tail) = rest.get_mut(..body.len()) {
            tail.copy_from_slice(body);
        }
        Self { bytes, len }
    }

    fn as_str(&self) -> &str {
        // Only ASCII is ever written, so this never fails; an empty string
        // would be refused by every parser anyway.
        self.bytes
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

/// Why a presented string is not a token. Every variant is refused before
/// any store lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedToken {
    /// The string is empty.
    #[error("token is empty")]
    Empty,
    /// The string has the wrong length (this includes oversized input).
    #[error("token has the wrong length")]
    Length,
    /// The string does not start with the expected prefix.
    #[error("token has the wrong prefix")]
    Prefix,
    /// The body is not URL-safe base64.
    #[error("token contains invalid characters")]
    Encoding,
    /// The checksum does not match.
    #[error("token checksum does not match")]
    Checksum,
}

impl<K: TokenKind> Token<K> {
    /// Total length of an encoded token of this kind.
    pub const ENCODED_LEN: usize = K::PREFIX.len() + BODY_LEN;

    /// Compile-time check that an encoded token fits [`Encoded`].
    const FITS: () = assert!(Self::ENCODED_LEN <= MAX_ENCODED_LEN);

    /// Draws a new token from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// [`RandomError`] if the OS cannot supply randomness; tessera never
    /// falls back to a weaker generator.
    ///
    /// ```
    /// let token = tessera::token::SessionToken::generate()?;
    /// assert!(token.expose().starts_with("tss_"));
    /// # Ok::<(), tessera::error::RandomError>(())
    /// ```
    pub fn generate() -> Result<Self, RandomError> {
        let mut secret = [0u8; SECRET_LEN];
        crate::random::fill(&mut secret)?;
        Ok(Self::from_secret(secret))
    }

    fn from_secret(secret: [u8; SECRET_LEN]) -> Self {
        let mut body = [0u8; SECRET_LEN + CHECKSUM_LEN];
        let (head, tail) = body.split_at_mut(SECRET_LEN);
        head.copy_from_slice(&secret);
        tail.copy_from_slice(&checksum::<K>(&secret));
        let () = Self::FITS;
        let mut text = [0u8; BODY_LEN];
        // Cannot fail: `text` is exactly the encoded length of `body`.
        let written = URL_SAFE_NO_PAD
            .encode_slice(body, &mut text)
            .unwrap_or_default();
        Self {
            secret,
            encoded: Encoded::new(K::PREFIX, text.get(..written).unwrap_or_default()),
            kind: PhantomData,
        }
    }

    /// Parses a presented token. Cheap and allocation-light; it checks, in
    /// order, emptiness, exact length (so oversized input costs nothing),
    /// prefix, alphabet and checksum.
    ///
    /// # Errors
    ///
    /// [`MalformedToken`] naming the first check that failed.
    ///
    /// ```
    /// use tessera::token::{MalformedToken, SessionToken};
    ///
    /// assert_eq!(SessionToken::parse("").unwrap_err(), MalformedToken::Empty);
    /// assert_eq!(SessionToken::parse("x").unwrap_err(), MalformedToken::Length);
    /// ```
    pub fn parse(input: &str) -> Result<Self, MalformedToken> {
        if input.is_empty() {
            return Err(MalformedToken::Empty);
        }
        if input.len() != Self::ENCODED_LEN {
            return Err(MalformedToken::Length);
        }
        let body = input
            .strip_prefix(K::PREFIX)
            .ok_or(MalformedToken::Prefix)?;
        let mut raw = [0u8; SECRET_LEN + CHECKSUM_LEN];
        let written = URL_SAFE_NO_PAD
            .decode_slice(body, &mut raw)
            .map_err(|_| MalformedToken::Encoding)?;
        if written != raw.len() {
            return Err(MalformedToken::Encoding);
        }
        let (secret_part, sum) = raw.split_at(SECRET_LEN);
        let mut secret = [0u8; SECRET_LEN];
        secret.copy_from_slice(secret_part);
        // The checksum is public information, so a plain comparison is fine.
        if checksum::<K>(&secret) != sum {
            return Err(MalformedToken::Checksum);
        }
        let () = Self::FITS;
        Ok(Self {
            secret,
            // `input` has the prefix and is ENCODED_LEN long (checked above).
            encoded: Encoded::new("", input.as_bytes()),
            kind: PhantomData,
        })
    }

    /// The encoded token, to be sent to the client. Named `expose` so that
    /// every place that reveals the secret is easy to find in review.
    pub fn expose(&self) -> &str {
        self.encoded.as_str()
    }

    /// The hash under which stores keep this token.
    ///
    /// ```
    /// let token = tessera::token::SessionToken::generate()?;
    /// assert_eq!(token.hash(), token.hash());
    /// # Ok::<(), tessera::error::RandomError>(())
    /// ```
    pub fn hash(&self) -> TokenHash {
        let mut hasher = Sha256::new();
        hasher.update(K::PREFIX.as_bytes());
        hasher.update(self.secret);
        TokenHash(hasher.finalize().into())
    }
}

impl Token<Refresh> {
    /// Encrypts `child` so that only a holder of `self` (its parent) can
    /// recover it: `child_secret ⊕ SHA-256("tessera refresh seal" ‖ parent_secret)`.
    ///
    /// Stores keep the sealed child beside the parent's *hash*, so a client
    /// that lost the response to a refresh can present the parent again and
    /// get the same child back (see [`crate::refresh`]), while a store dump
    /// still yields nothing usable: the key is derived from a secret the
    /// store never sees. Each parent seals exactly one child, so the
    /// one-time pad is never reused.
    ///
    /// ```
    /// use tessera::token::RefreshToken;
    /// let parent = RefreshToken::generate()?;
    /// let child = RefreshToken::generate()?;
    /// let sealed = parent.seal_child(&child);
    /// assert_eq!(parent.unseal_child(&sealed), child);
    /// assert_ne!(RefreshToken::generate()?.unseal_child(&sealed), child);
    /// # Ok::<(), tessera::error::RandomError>(())
    /// ```
    pub fn seal_child(&self, child: &RefreshToken) -> [u8; SECRET_LEN] {
        let pad = self.seal_pad();
        let mut out = [0u8; SECRET_LEN];
        for ((o, c), p) in out.iter_mut().zip(child.secret).zip(pad) {
            *o = c ^ p;
        }
        out
    }

    /// Recovers a child sealed by [`Token::seal_child`] with this parent.
    pub fn unseal_child(&self, sealed: &[u8; SECRET_LEN]) -> RefreshToken {
        let pad = self.seal_pad();
        let mut secret = [0u8; SECRET_LEN];
        for ((s, c), p) in secret.iter_mut().zip(sealed).zip(pad) {
            *s = c ^ p;
        }
        Self::from_secret(secret)
    }

    fn seal_pad(&self) -> [u8; SECRET_LEN] {
        let mut hasher = Sha256::new();
        hasher.update(b"tessera refresh seal");
        hasher.update(self.secret);
        hasher.finalize().into()
    }
}

fn checksum<K: TokenKind>(secret: &[u8; SECRET_LEN]) -> [u8; CHECKSUM_LEN] {
    let mut crc = crc32fast::Hasher::new();
    crc.update(K::PREFIX.as_bytes());
    crc.update(secret);
    crc.finalize().to_be_bytes()
}

impl<K: TokenKind> Clone for Token<K> {
    fn clone(&self) -> Self {
        Self {
            secret: self.secret,
            encoded: self.encoded,
            kind: PhantomData,
        }
    }
}

/// Constant-time: comparing secrets must not leak how many leading bytes
/// matched.
impl<K: TokenKind> PartialEq for Token<K> {
    fn eq(&self, other: &Self) -> bool {
        self.secret.ct_eq(&other.secret).into()
    }
}
impl<K: TokenKind> Eq for Token<K> {}

impl<K: TokenKind> fmt::Debug for Token<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}<redacted>)", K::PREFIX)
    }
}

/// SHA-256 of a token: the only form of a token a store ever sees.
///
/// Its `Debug` and [`TokenHash::to_hex`] are safe to log: the hash cannot be
/// turned back into a working token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Wraps raw hash bytes read back from a store.
    ///
    /// ```
    /// let hash = tessera::token::TokenHash::from_bytes([7; 32]);
    /// assert_eq!(hash.as_bytes(), &[7; 32]);
    /// ```
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses the 64-character lowercase hex form.
    ///
    /// ```
    /// let hash = tessera::token::TokenHash::from_bytes([0xab; 32]);
    /// assert_eq!(tessera::token::TokenHash::from_hex(&hash.to_hex()), Some(hash));
    /// ```
    pub fn from_hex(hex: &str) -> Option<Self> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = hex_val(*pair.first()?)?;
            let lo = hex_val(*pair.get(1)?)?;
            *slot = (hi << 4) | lo;
        }
        Some(Self(out))
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters (for text keys such as Redis's).
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let digit = |n: u8| char::from(DIGITS.get(usize::from(n)).copied().unwrap_or(b'0'));
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(digit(byte >> 4));
            out.push(digit(byte & 0x0f));
        }
        out
    }

    /// A short, non-reversible fingerprint for log lines (OWASP: log a hash
    /// of the ID, never the ID).
    pub fn fingerprint(&self) -> String {
        let mut hex = self.to_hex();
        hex.truncate(16);
        hex
    }
}

impl serde::Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom("invalid token hash"))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_token_round_trips() {
        let token = SessionToken::generate().unwrap();
        assert_eq!(token.expose().len(), SessionToken::ENCODED_LEN);
        assert_eq!(SessionToken::parse(token.expose()).unwrap(), token);
    }

    #[test]
    fn tokens_are_distinct() {
        let a = SessionToken::generate().unwrap();
        let b = SessionToken::generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn malformed_tokens_are_refused_with_a_reason() {
        let good = SessionToken::generate().unwrap();
        let s = good.expose();
        assert_eq!(SessionToken::parse("").unwrap_err(), MalformedToken::Empty);
        assert_eq!(
            SessionToken::parse(&s[1..]).unwrap_err(),
            MalformedToken::Length
        );
        let oversized = "a".repeat(1 << 20);
        assert_eq!(
            SessionToken::parse(&oversized).unwrap_err(),
            MalformedToken::Length
        );
        let wrong_prefix = format!("tsx_{}", &s[4..]);
        assert_eq!(
            SessionToken::parse(&wrong_prefix).unwrap_err(),
            MalformedToken::Prefix
        );
        let bad_chars = format!("tss_{}", "!".repeat(48));
        assert_eq!(
            SessionToken::parse(&bad_chars).unwrap_err(),
            MalformedToken::Encoding
        );
        let mut flipped = s.as_bytes().to_vec();
        flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            SessionToken::parse(&flipped).unwrap_err(),
            MalformedToken::Checksum
        );
    }

    #[test]
    fn a_token_of_another_kind_is_refused() {
        let refresh = RefreshToken::generate().unwrap();
        assert_eq!(
            SessionToken::parse(refresh.expose()).unwrap_err(),
            MalformedToken::Prefix
        );
    }

    #[test]
    fn debug_does_not_reveal_the_secret() {
        let token = SessionToken::generate().unwrap();
        let shown = format!("{token:?}");
        assert!(!shown.contains(&token.expose()[4..]));
    }

    #[test]
    fn hash_hex_round_trips() {
        let hash = SessionToken::generate().unwrap().hash();
        assert_eq!(TokenHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(TokenHash::from_hex("zz"), None);
    }
}
