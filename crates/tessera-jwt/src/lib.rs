#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// Library and server code never panics on input or store errors: no
// unwrap()/expect() outside tests (the conformance kit allows them).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod claims;
mod error;
mod jwks;
mod key;
mod keys;
mod keystore;
mod sealed;
mod sign;
mod verify;

pub use crate::claims::AccessClaims;
pub use crate::error::{BoxError, IssueError, KeyError, Part, VerifyError};
pub use crate::jwks::{Jwk, Jwks, PublicKeySet};
pub use crate::key::{Algorithm, Kid};
pub use crate::keys::{DEFAULT_LEEWAY, DEFAULT_LIFETIME, DEFAULT_RETENTION, KeyInfo, KeySet};
pub use crate::keystore::KeyStore;
pub use crate::sealed::KeyEncryptionKey;
pub use crate::sign::{AccessToken, Issuer, IssuerConfig};
pub use crate::verify::{
    MAX_TOKEN_LEN, SessionCheck, StoreSessionCheck, VerifiedToken, Verifier, VerifierConfig,
};
