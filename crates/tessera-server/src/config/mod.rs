//! Server configuration: defaults < `--config tessera.toml` < `TESSERA_*`
//! environment variables < command-line flags, merged with figment.
//!
//! Every key of [`Config`] is a TOML key and, upper-cased with the
//! `TESSERA_` prefix, an environment variable (`idle_timeout` is
//! `TESSERA_IDLE_TIMEOUT`). Durations are written the humantime way: `90s`,
//! `30m`, `12h`, `1h 30m`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

mod derived;
pub mod duration;
mod env;
pub mod optional_duration;
pub(crate) mod validate;
pub mod values;

use self::env::{ENV_KEYS, REMOVED_KEYS};
pub use self::env::{UnknownVar, unknown_env_vars};
use self::values::MetricsToken;
use crate::proxy::{ForwardedHeader, TrustedProxies};

/// The complete server configuration.
///
/// ```
/// let config = tessera_server::config::Config::default();
/// assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
/// assert_eq!(config.store, "sqlite://tessera.db");
/// assert_eq!(config.body_limit, 64 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on. Port 0 picks a free port (the chosen
    /// address is printed at start-up).
    pub listen: SocketAddr,
    /// Session store URL: `sqlite://PATH` (created if missing),
    /// `postgres://…`/`postgresql://…`, `mysql://…`/`mariadb://…`,
    /// `redis://…`/`rediss://…`, `redis-cluster://host:port,host:port,…`
    /// (`rediss-cluster://…` with TLS),
    /// or `memory://` (one process only, lost at exit).
    pub store: String,
    /// The server's own database (users, API keys): `sqlite://PATH`,
    /// `postgres://…` or `mysql://…`/`mariadb://…`. By default the store's
    /// own database when the store is SQLite, PostgreSQL or MySQL, else
    /// `sqlite://tessera.db` (see [`Config::database_url`]).
    pub database: Option<String>,
    /// The URL people open, printed at start-up; defaults to the listen
    /// address.
    pub public_url: Option<String>,
    /// Inactivity after which a session ends (OWASP: 15–30 minutes for
    /// low-risk applications).
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Lifetime after which a session ends whatever its activity (ASVS 5.0
    /// V7.3.2).
    #[serde(with = "duration")]
    pub absolute_timeout: Duration,
    /// Read-only activity is written back only when it moves the idle
    /// deadline by more than this. Unset (default): it follows the idle
    /// timeout, `min(60s, idle_timeout / 10)` (see
    /// [`Config::effective_touch_step`]); set, it must be shorter than
    /// `idle_timeout`.
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub touch_step: Option<Duration>,

    // "Keep me signed in": the remember lifetime class.
    /// Inactivity after which a "keep me signed in" session ends. Set
    /// together with `remember_absolute_timeout` to offer the class (a
    /// checkbox on the sign-in form, `remember: true` in the API); unset
    /// (default), the class is off and asking for it is refused.
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub remember_idle_timeout: Option<Duration>,
    /// Lifetime after which a "keep me signed in" session ends whatever its
    /// activity, and the `Max-Age` of its cookie (ASVS 5.0 V7.3.2; NIST SP
    /// 800-63B section 7.2 bounds it by the assurance level).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub remember_absolute_timeout: Option<Duration>,

    /// How recent a sign-in must be for sensitive actions such as a
    /// password change (ASVS 5.0 V7.5.3).
    #[serde(with = "duration")]
    pub reauth_window: Duration,
    /// Concurrent sessions per user; the oldest are revoked beyond it.
    pub max_sessions_per_user: Option<usize>,
    /// Plain-HTTP development mode: the cookie loses `Secure` and its
    /// `__Host-` prefix. Logs a warning at start-up. Never in production.
    pub insecure_http: bool,
    /// Extra origins allowed to send state-changing requests
    /// (`https://admin.example.com`). A list, or one comma-separated string.
    #[serde(deserialize_with = "string_or_list")]
    pub trusted_origins: Vec<String>,
    /// Largest accepted request body in bytes; larger bodies get 413.
    pub body_limit: usize,
    /// Time a client has to send a complete request head; past it the
    /// connection is closed (slowloris defence, OWASP DoS Cheat Sheet).
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Time a client has to send a request body once the head arrived; past
    /// it the request is answered 408 and the connection closed, so a
    /// trickled body cannot hold a connection for ever.
    #[serde(with = "duration")]
    pub request_body_timeout: Duration,
    /// Connections served at once; further clients wait in the kernel's
    /// accept queue until one closes (bounds sockets, tasks and memory).
    pub max_connections: usize,
    /// Failed sign-ins per user name within the window before 429.
    pub login_max_failures_per_user: u32,
    /// Failed sign-ins per client IP within the window before 429.
    pub login_max_failures_per_ip: u32,
    /// The window over which failed sign-ins are counted.
    #[serde(with = "duration")]
    pub login_failure_window: Duration,
    /// Connections in each SQL pool: the session store's (PostgreSQL,
    /// MySQL, SQLite readers) and the server database's. Redis uses one
    /// multiplexed connection per node and ignores it.
    pub store_pool_size: u32,
    /// Upper bound on one store or database operation, waiting for a pooled
    /// connection included; past it the request fails with 503 instead of
    /// hanging (docs/design.md, invariant 9).
    #[serde(with = "duration")]
    pub store_timeout: Duration,
    /// Upper bound on opening one connection to the store (Redis; SQL pools
    /// bound connecting by `store_timeout`).
    #[serde(with = "duration")]
    pub store_connect_timeout: Duration,
    /// Prefix of every Redis key (default `tessera:`); instances that share
    /// sessions must use the same one.
    pub store_key_prefix: String,
    /// How often the sweeper purges expired sessions.
    #[serde(with = "duration")]
    pub sweep_interval: Duration,
    /// `tracing` filter for the JSON log (`info`, `tessera=debug`, …).
    pub log_filter: String,
    /// Directory of the access-token signing keys (created 0700, key files
    /// 0600). Default: `tessera-keys` next to the SQLite database file (see
    /// [`Config::keys_path`]). Instances that issue tokens for one issuer
    /// share it.
    pub keys_dir: Option<String>,
    /// A file holding the key-encryption key that seals the signing keys
    /// kept in a shared store (PostgreSQL, MySQL, Redis; see
    /// [`crate::keys`]): base64 of 32 random bytes, mode 0600 or stricter.
    /// Alternatively `TESSERA_KEY_ENCRYPTION_KEY` holds the key itself;
    /// never put the key in the configuration file.
    pub key_encryption_key_file: Option<String>,
    /// Lifetime of signed access tokens (JWT). Default 10 minutes: it is
    /// also how long an access token outlives a revoked session.
    #[serde(with = "duration")]
    pub access_token_lifetime: Duration,
    /// `iss` of access tokens; default the public URL, else `tessera`.
    pub token_issuer: Option<String>,
    /// `aud` of access tokens; default the public URL, else `tessera`.
    pub token_audience: Option<String>,
    /// Signing algorithm for new keys: `eddsa` (Ed25519, default) or `es256`.
    pub token_algorithm: String,
    /// How long a used refresh token may be presented again and get the
    /// same new token back (lost responses) instead of counting as theft.
    #[serde(with = "duration")]
    pub refresh_grace: Duration,

    // --- Client IP behind reverse proxies (src/proxy.rs) ---
    /// Networks of the reverse proxies in front of the server, in CIDR
    /// notation (`["10.0.0.0/8", "127.0.0.1"]`, or one comma-separated
    /// string). Only requests whose socket peer is in them have their
    /// forwarding header read, and the client is the right-most address in
    /// it that is not (RFC 7239 §5.2). Empty (default): forwarding headers
    /// change nothing.
    pub trusted_proxies: TrustedProxies,
    /// The header those proxies maintain: `x-forwarded-for` (default) or
    /// `forwarded` (RFC 7239). Only this one is read.
    pub client_ip_header: ForwardedHeader,

    // --- Operations: metrics access, HSTS, demo user (src/ops.rs, src/server.rs) ---
    /// Bearer token `GET /metrics` requires on the main listener
    /// (`Authorization: Bearer …`, at least 32 characters; an empty value
    /// is unset). Unset (default): the main listener does not serve
    /// metrics at all (404), so they are never public by accident.
    pub metrics_token: Option<MetricsToken>,
    /// A second address that serves only `GET /metrics` (for example
    /// `127.0.0.1:9464`, reachable by the scraper but not by the public);
    /// `metrics_token` is required there too when it is set.
    pub metrics_listen: Option<SocketAddr>,
    /// `max-age` of the `Strict-Transport-Security` header sent on every
    /// response (with `includeSubDomains`) unless `insecure_http`. Default
    /// one year (ASVS 5.0 V3.4.1; OWASP HTTP Strict Transport Security
    /// Cheat Sheet); `0s` tells browsers to forget the policy.
    #[serde(with = "duration")]
    pub hsts_max_age: Duration,
    /// Create the user `demo` with a random password when a first start
    /// finds no users. Its password is printed only when standard output is
    /// a terminal; otherwise it is written once to a 0600 file whose path
    /// is logged (see [`Config::demo_password_path`]).
    pub demo_user: bool,
    /// Where that file goes; empty or unset: `tessera-demo-password` beside
    /// the SQLite database, else in the working directory.
    pub demo_password_file: Option<String>,
    // --- Sign-in admission, throttling and input bounds -------------------
    // (docs/security.md, "Sign-in under load")
    /// Argon2 password hashes computed at once (each holds 19 MiB while it
    /// runs); a short line of 4 per slot waits behind them and further
    /// sign-ins get 503 with `Retry-After` at once. Default: the number of
    /// CPUs.
    pub password_hash_concurrency: Option<usize>,
    /// Bytes of memory for the sign-in limiter's counters when they live in
    /// this process (memory and SQLite stores). Default 16 MiB.
    pub login_limiter_memory: u64,
    /// Enables the OAuth password grant (`grant_type=password` on
    /// `POST /token`). Off by default: RFC 9700 §2.4 says the resource
    /// owner password credentials grant MUST NOT be used. Logs a warning at
    /// start-up when on.
    pub password_grant: bool,
    /// `client_id` claim of access tokens (RFC 9068 §2.2 requires one):
    /// tessera keeps no client registry, so every token it issues names the
    /// one first-party client of this deployment. Default `tessera`.
    pub token_client_id: String,
    /// Largest session `data` (its JSON encoding, in bytes) a `/v1` request
    /// may leave behind, after its changes are merged. Default 16 KiB.
    pub max_session_data: usize,

    // --- Concurrent sessions per user (core `tessera::policy`) -----------
    /// What a sign-in does when its user already holds
    /// `max_sessions_per_user` sessions: `evict_oldest` (default; the
    /// oldest end with `revoked` by `session_limit`) or `refuse_new` (the
    /// sign-in gets 409 `session_limit`). Enforced in the same store
    /// operation that creates the session (ASVS 5.0 V7.1.2).
    pub session_limit_action: tessera::policy::SessionLimitAction,

    // --- Per-instance session cache (src/cache.rs) ------------------------
    // (docs/running-several-instances.md, "The session cache")
    /// `off` (default) or `on`: keep verified sessions in this process's
    /// memory and answer repeated loads without the store. Invalidated
    /// through the store's own channel (Redis pub/sub, PostgreSQL
    /// `LISTEN/NOTIFY`); MySQL/MariaDB and SQLite have none, and a change
    /// made by another process reaches this one within
    /// `cache_max_staleness` (a start-up warning says so). With a channel,
    /// API keys found in the database are remembered too, and
    /// `tessera api-key revoke` publishes their revocation on it
    /// (src/api_keys.rs).
    pub cache: values::CacheMode,
    /// No cached session is served once older than this (default `1s`):
    /// the worst-case delay of a revocation made elsewhere when its
    /// invalidation is lost, and the polling bound without a channel.
    /// Between `10ms` and `10m`.
    #[serde(with = "duration")]
    pub cache_max_staleness: Duration,
    /// Sessions cached at most (default 100,000).
    pub cache_max_entries: u64,
    /// Bytes of cached sessions at most (approximate; default 64 MiB,
    /// at least 64 KiB).
    pub cache_max_bytes: u64,

    // --- Device Bound Session Credentials (core `tessera::dbsc`) ---------
    // (docs/dbsc.md)
    /// `off` (default), `additive` or `required`. Additive: sessions signed
    /// in on the site are offered binding to a key the browser keeps in
    /// hardware, and a bound session's request without its bound cookie is
    /// served but logged and counted (observe first). Required: such a
    /// request is not authenticated — on the site, in forward auth, in
    /// `/v1/sessions/verify` and `/v1/requests/check`.
    pub dbsc: tessera::dbsc::DbscMode,
    /// Lifetime of the short-lived bound cookie (default `10m`): how long a
    /// stolen copy keeps working. Between `1m` and `1h`.
    #[serde(with = "duration")]
    pub dbsc_cookie_lifetime: Duration,
}

impl Default for Config {
    fn default() -> Self {
        let policy = tessera::SessionPolicy::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            store: String::from("sqlite://tessera.db"),
            database: None,
            public_url: None,
            idle_timeout: policy.idle_timeout,
            absolute_timeout: policy.absolute_timeout,
            touch_step: None,
            remember_idle_timeout: None,
            remember_absolute_timeout: None,
            reauth_window: Duration::from_secs(5 * 60),
            max_sessions_per_user: None,
            insecure_http: false,
            trusted_origins: Vec::new(),
            body_limit: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            request_body_timeout: Duration::from_secs(30),
            max_connections: 4096,
            login_max_failures_per_user: 5,
            login_max_failures_per_ip: 20,
            login_failure_window: Duration::from_secs(15 * 60),
            store_pool_size: 8,
            store_timeout: Duration::from_secs(5),
            store_connect_timeout: Duration::from_secs(5),
            store_key_prefix: String::from("tessera:"),
            sweep_interval: Duration::from_secs(60),
            log_filter: String::from("info"),
            keys_dir: None,
            key_encryption_key_file: None,
            access_token_lifetime: Duration::from_secs(10 * 60),
            token_issuer: None,
            token_audience: None,
            token_algorithm: String::from("eddsa"),
            refresh_grace: policy.refresh_grace,
            trusted_proxies: TrustedProxies::default(),
            client_ip_header: ForwardedHeader::default(),
            metrics_token: None,
            metrics_listen: None,
            hsts_max_age: Duration::from_secs(365 * 24 * 3600),
            demo_user: true,
            demo_password_file: None,
            password_hash_concurrency: None,
            login_limiter_memory: values::DEFAULT_LOGIN_LIMITER_MEMORY,
            password_grant: false,
            token_client_id: String::from("tessera"),
            max_session_data: 16 * 1024,
            session_limit_action: policy.session_limit_action,
            cache: values::CacheMode::Off,
            cache_max_staleness: tessera::cache::CacheConfig::default().max_staleness,
            cache_max_entries: tessera::cache::CacheConfig::default().max_entries,
            cache_max_bytes: tessera::cache::CacheConfig::default().max_bytes,
            dbsc: tessera::dbsc::DbscMode::Off,
            dbsc_cookie_lifetime: tessera::dbsc::DbscConfig::default().cookie_lifetime,
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--store`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// `--database`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// `--insecure-http` (only ever turns it on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_http: Option<bool>,
}

/// A configuration that could not be read or makes no sense.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A layer could not be parsed (names the key and the source).
    #[error("{0}")]
    Parse(Box<figment::Error>),
    /// The configuration file does not exist.
    #[error("configuration file {0} not found")]
    MissingFile(String),
    /// The timeouts cannot be enforced.
    #[error("invalid session policy: {0}")]
    Policy(#[from] tessera::policy::PolicyError),
    /// Any other inconsistent value.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Merges the layers: defaults, the TOML file (if given), `TESSERA_*`
    /// variables of `env`, then `overrides`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the bad key or file.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = Env::prefixed("TESSERA_").filter(|key| {
            ENV_KEYS
                .iter()
                .chain(REMOVED_KEYS.iter().map(|(k, _)| k))
                .any(|k| key.as_str().eq_ignore_ascii_case(k))
        });
        figment = figment.merge(env).merge(Serialized::defaults(overrides));
        for (key, instead) in REMOVED_KEYS {
            if figment.contains(key) {
                return Err(ConfigError::Invalid(format!(
                    "{key} (TESSERA_{}) is no longer supported: {instead}",
                    key.to_ascii_uppercase()
                )));
            }
        }
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

#[cfg(test)]
mod tests;
