//! What the settings say about the keys: the algorithm, the retention of
//! retired keys, the issuer and audience of access tokens.

use std::time::Duration;

use tessera_jwt::{Algorithm, DEFAULT_LEEWAY, KeyError};

use crate::config::Config;
use crate::server_error::ServerError;

/// The issuer used when neither `token_issuer` nor `public_url` is set.
pub const DEFAULT_ISSUER: &str = "tessera";

/// The signing algorithm named by the `token_algorithm` setting.
///
/// ```
/// use tessera_jwt::Algorithm;
/// assert_eq!(tessera_server::keys::algorithm("eddsa"), Some(Algorithm::EdDSA));
/// assert_eq!(tessera_server::keys::algorithm("ES256"), Some(Algorithm::Es256));
/// assert_eq!(tessera_server::keys::algorithm("HS256"), None);
/// ```
pub fn algorithm(name: &str) -> Option<Algorithm> {
    match name.to_ascii_lowercase().as_str() {
        "eddsa" => Some(Algorithm::EdDSA),
        "es256" => Some(Algorithm::Es256),
        _ => None,
    }
}

/// How long a retired key stays published: the token lifetime plus the
/// verifier's clock-skew leeway, after which every token it signed has
/// expired everywhere.
///
/// ```
/// use std::time::Duration;
/// let config = tessera_server::config::Config::default();
/// assert_eq!(tessera_server::keys::retention(&config), Duration::from_secs(630));
/// ```
pub fn retention(config: &Config) -> Duration {
    config.access_token_lifetime + DEFAULT_LEEWAY
}

/// `iss` and `aud` of access tokens: the settings, else the public URL
/// (without a trailing `/`), else [`DEFAULT_ISSUER`].
///
/// ```
/// let mut config = tessera_server::config::Config::default();
/// assert_eq!(tessera_server::keys::issuer_and_audience(&config),
///            ("tessera".to_owned(), "tessera".to_owned()));
/// config.public_url = Some("https://auth.example/".into());
/// config.token_audience = Some("https://api.example".into());
/// assert_eq!(tessera_server::keys::issuer_and_audience(&config),
///            ("https://auth.example".to_owned(), "https://api.example".to_owned()));
/// ```
pub fn issuer_and_audience(config: &Config) -> (String, String) {
    let public = config
        .public_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_ISSUER.to_owned());
    (
        config
            .token_issuer
            .clone()
            .unwrap_or_else(|| public.clone()),
        config.token_audience.clone().unwrap_or(public),
    )
}

/// The `token_algorithm` of `config`.
pub(super) fn configured_algorithm(config: &Config) -> Result<Algorithm, ServerError> {
    algorithm(&config.token_algorithm).ok_or_else(|| {
        ServerError::Message(format!(
            "token_algorithm {:?} must be eddsa or es256",
            config.token_algorithm
        ))
    })
}

pub(super) fn key_error(e: KeyError) -> ServerError {
    ServerError::Message(format!("signing keys: {e}"))
}
