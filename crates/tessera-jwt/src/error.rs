//! Errors, one enum per concern: verifying a token, issuing one, managing
//! keys. Each variant is something a caller can act on or log precisely;
//! none carries attacker-controlled text or key material.

use std::path::PathBuf;

/// A boxed error from a [`SessionCheck`](crate::SessionCheck) implementation.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which part of a compact JWS could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// Not three non-empty dot-separated segments of base64url text.
    Structure,
    /// The protected header is not strict base64url of a JSON object with
    /// exactly the members `alg`, `typ` and `kid`.
    Header,
    /// The claims are not strict base64url of the expected JSON object, or a
    /// claim has the wrong type or an out-of-range value.
    Claims,
    /// The signature is not strict base64url of the algorithm's exact length.
    Signature,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Structure => "structure",
            Part::Header => "header",
            Part::Claims => "claims",
            Part::Signature => "signature",
        })
    }
}

/// Why an access token was refused.
///
/// Every variant means "not authenticated" (HTTP 401 with
/// `WWW-Authenticate: Bearer error="invalid_token"`, RFC 6750 §3.1), except
/// [`VerifyError::SessionCheckFailed`], which means "unknown" and must fail
/// closed with 503. The variants exist for logs and metrics; do not tell the
/// client which check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The input is longer than [`MAX_TOKEN_LEN`](crate::MAX_TOKEN_LEN); it
    /// was refused before any decoding, so the work done is bounded.
    #[error("token is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Length of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A part of the token could not be decoded.
    #[error("malformed token ({0})")]
    Malformed(Part),
    /// The header `typ` is missing or is not `at+jwt` (RFC 9068 §4, RFC 8725
    /// §3.11: explicit typing stops other JWTs, e.g. ID tokens, from being
    /// accepted as access tokens).
    #[error("token type is not at+jwt")]
    WrongType,
    /// The header `alg` is not one of the configured algorithms: `none`,
    /// every HMAC algorithm, and anything not explicitly enabled (RFC 8725
    /// §3.1).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The header has no `kid`. Keys are selected by `kid` only; the
    /// verifier never tries every key.
    #[error("token has no key id")]
    MissingKid,
    /// The `kid` names no key in the key set.
    #[error("unknown key id")]
    UnknownKid,
    /// The `alg` is enabled but is not the algorithm bound to this `kid`'s
    /// key: the key, not the token, decides the algorithm (algorithm
    /// confusion, RFC 8725 §2.1).
    #[error("algorithm does not match the key")]
    AlgorithmMismatch,
    /// The signature does not verify with the key named by `kid`.
    #[error("bad signature")]
    BadSignature,
    /// The key was retired and its publication window is over, or the token
    /// claims to have been issued after its key stopped signing.
    #[error("key retired")]
    RetiredKey,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `exp - iat` is not positive or exceeds the configured maximum
    /// lifetime: a misconfigured or compromised issuer must not be able to
    /// mint long-lived tokens.
    #[error("token lifetime out of bounds")]
    LifetimeOutOfBounds,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// The optional per-session check said the session is gone.
    #[error("session no longer active")]
    SessionRevoked,
    /// The optional per-session check could not answer. Fail closed (503).
    #[error("session check failed: {0}")]
    SessionCheckFailed(#[source] BoxError),
}

/// Why an access token could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The key set has no active signing key (all retired or removed).
    #[error("no active signing key")]
    NoSigningKey,
    /// The configured lifetime is zero or longer than the key set's
    /// retention, so tokens could outlive the publication of their key.
    #[error("token lifetime is zero or exceeds the key retention")]
    LifetimeOutOfBounds,
    /// A configured or given string (issuer, audience, client id, subject)
    /// is empty or longer than [`MAX_CLAIM_LEN`](crate::claims::MAX_CLAIM_LEN).
    #[error("invalid {0}: empty or too long")]
    InvalidClaim(&'static str),
    /// The OS CSPRNG failed while drawing the `jti`.
    #[error("the operating system's random number generator failed")]
    Random,
    /// The deadline given to [`Issuer::issue_until`](crate::Issuer::issue_until)
    /// has passed: the token would be expired when issued.
    #[error("the session ends before the token could be valid")]
    AlreadyEnded,
    /// The claims could not be serialised.
    #[error("claims could not be encoded: {0}")]
    Encoding(#[from] serde_json::Error),
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A key directory or file can be read or written by group or others,
    /// or is a symbolic link. tessera refuses to use it rather than fix it
    /// silently (the key may already have leaked).
    #[error(
        "{path} has insecure permissions {mode:o} (want 0700 for the directory, 0600 for files, no symlinks)"
    )]
    InsecurePermissions {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The manifest is not valid JSON of the expected shape, or is
    /// inconsistent (duplicate kid, more than one active key).
    #[error("invalid key manifest: {0}")]
    Manifest(String),
    /// A private key file is not a PKCS#8 PEM key of the manifest's
    /// algorithm.
    #[error("invalid private key file for kid {kid}")]
    InvalidKeyFile {
        /// The key id.
        kid: String,
    },
    /// A JWKS document is malformed, holds an invalid public key, or holds
    /// private key material (`d`), which must never be published.
    #[error("invalid JWKS: {0}")]
    Jwks(String),
    /// The key directory does not exist or has no manifest.
    #[error("no key store at {0}")]
    NotFound(PathBuf),
    /// The OS CSPRNG failed while generating a key.
    #[error("the operating system's random number generator failed")]
    Random,
    /// A key could not be encoded as PKCS#8.
    #[error("key could not be encoded")]
    Encoding,
    /// The key-encryption key is unusable; the message says why and never
    /// contains the key.
    #[error("invalid key-encryption key: {0}")]
    KeyEncryptionKey(&'static str),
    /// A sealed key set was sealed under another key-encryption key than
    /// the one configured (the two are named by their public ids).
    #[error(
        "the signing keys were sealed with key-encryption key {sealed_with}, but {configured} is configured"
    )]
    WrongKeyEncryptionKey {
        /// The id written in the document.
        sealed_with: String,
        /// The id of the configured key.
        configured: String,
    },
    /// A sealed private key did not open: altered, truncated, or moved
    /// from another entry.
    #[error("the sealed private key of kid {kid} does not open (altered or moved)")]
    Sealed {
        /// The key id.
        kid: String,
    },
}

impl KeyError {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
