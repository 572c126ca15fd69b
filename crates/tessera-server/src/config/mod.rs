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

pub mod values;

use self::values::MetricsToken;
use crate::proxy::{ForwardedHeader, TrustedProxies};

/// Environment variables read into the configuration (without the prefix,
/// lower-cased). Others with the `TESSERA_` prefix do not change the
/// configuration, so a variable meant for something else cannot break
/// start-up, but each is reported with a warning at start-up (see
/// [`unknown_env_vars`]), so a typo such as `TESSERA_IDEL_TIMEOUT` does not
/// silently leave the default in force; unknown TOML keys are refused.
const ENV_KEYS: &[&str] = &[
    "listen",
    "store",
    "database",
    "public_url",
    "idle_timeout",
    "absolute_timeout",
    "touch_step",
    // "Keep me signed in" (the remember lifetime class).
    "remember_idle_timeout",
    "remember_absolute_timeout",
    "reauth_window",
    "max_sessions_per_user",
    "insecure_http",
    "trusted_origins",
    "trusted_proxies",
    "client_ip_header",
    "metrics_token",
    "metrics_listen",
    "hsts_max_age",
    "demo_user",
    "demo_password_file",
    "body_limit",
    "header_read_timeout",
    "request_body_timeout",
    "max_connections",
    "login_max_failures_per_user",
    "login_max_failures_per_ip",
    "login_failure_window",
    "store_pool_size",
    "store_timeout",
    "store_connect_timeout",
    "store_key_prefix",
    "sweep_interval",
    "log_filter",
    "keys_dir",
    "key_encryption_key_file",
    "access_token_lifetime",
    "token_issuer",
    "token_audience",
    "token_algorithm",
    "refresh_grace",
    // Sign-in admission, throttling and input bounds.
    "password_hash_concurrency",
    "login_limiter_memory",
    "password_grant",
    "max_session_data",
    "token_client_id",
    // Concurrent sessions per user.
    "session_limit_action",
    // The per-instance session cache (src/cache.rs).
    "cache",
    "cache_max_staleness",
    "cache_max_entries",
    "cache_max_bytes",
    // Device Bound Session Credentials (tessera::dbsc).
    "dbsc",
    "dbsc_cookie_lifetime",
];

/// Keys of earlier versions, refused with what to write instead (a
/// silently ignored security setting would be worse than a failed start).
const REMOVED_KEYS: &[(&str, &str)] = &[(
    "trust_forwarded_for",
    "list the networks of your reverse proxies instead, e.g. \
     trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]; the client IP is then the \
     right-most X-Forwarded-For address not in them (see docs/security.md)",
)];

/// `TESSERA_` variables that are not settings but are read elsewhere
/// (exact names), and a prefix reserved for test harnesses.
const OTHER_ENV: &[&str] = &["TESSERA_TEST_CLOCK_FILE", values::KEK_ENV];
const TEST_ENV_PREFIX: &str = "TESSERA_TEST_";

/// A `TESSERA_*` environment variable that names no setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVar {
    /// The variable's name.
    pub name: String,
    /// The known variable it most resembles, if any is close.
    pub did_you_mean: Option<String>,
}

/// The `TESSERA_*` names among `names` (environment variable names) that
/// no setting reads, each with the closest known name when one is close
/// (a typo). Names under `TESSERA_TEST_` belong to test harnesses and are
/// not reported.
///
/// ```
/// use tessera_server::config::unknown_env_vars;
/// let unknown = unknown_env_vars(["TESSERA_IDEL_TIMEOUT", "TESSERA_IDLE_TIMEOUT", "HOME"]);
/// assert_eq!(unknown.len(), 1);
/// assert_eq!(unknown[0].name, "TESSERA_IDEL_TIMEOUT");
/// assert_eq!(unknown[0].did_you_mean.as_deref(), Some("TESSERA_IDLE_TIMEOUT"));
/// ```
pub fn unknown_env_vars<I, S>(names: I) -> Vec<UnknownVar>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let known: Vec<String> = ENV_KEYS
        .iter()
        .chain(REMOVED_KEYS.iter().map(|(k, _)| k))
        .map(|k| format!("TESSERA_{}", k.to_ascii_uppercase()))
        .chain(OTHER_ENV.iter().map(|k| (*k).to_owned()))
        .collect();
    let mut unknown = Vec::new();
    for name in names {
        let name = name.as_ref();
        let upper = name.to_ascii_uppercase();
        if !upper.starts_with("TESSERA_")
            || upper.starts_with(TEST_ENV_PREFIX)
            || known.contains(&upper)
        {
            continue;
        }
        // A few edits away: a typo of that name.
        let did_you_mean = known
            .iter()
            .map(|k| (strsim::damerau_levenshtein(&upper, k), k))
            .filter(|(distance, _)| *distance <= 3)
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, k)| k.clone());
        unknown.push(UnknownVar {
            name: name.to_owned(),
            did_you_mean,
        });
    }
    unknown
}

/// The touch step when the idle timeout is long enough for it (see
/// [`Config::effective_touch_step`]).
const DEFAULT_TOUCH_STEP: Duration = Duration::from_secs(60);

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
    /// `cache_max_staleness` (a start-up warning says so).
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

    /// The session policy these settings describe.
    pub fn policy(&self) -> tessera::SessionPolicy {
        let policy = tessera::SessionPolicy::default()
            .with_idle_timeout(self.idle_timeout)
            .with_absolute_timeout(self.absolute_timeout)
            .with_touch_step(self.effective_touch_step())
            .with_max_sessions_per_user(self.max_sessions_per_user)
            .with_session_limit_action(self.session_limit_action)
            .with_refresh_grace(self.refresh_grace)
            .with_max_data_bytes(Some(self.max_session_data));
        match self.remember() {
            Some((idle, absolute)) => policy.with_remember(idle, absolute),
            None => policy,
        }
    }

    /// The remember class's idle and absolute timeouts, when both are set
    /// (the class is offered only then).
    pub fn remember(&self) -> Option<(Duration, Duration)> {
        self.remember_idle_timeout
            .zip(self.remember_absolute_timeout)
    }

    /// The touch step in force: `touch_step` when set, else derived from
    /// the idle timeout as `min(60s, idle_timeout / 10)`, so that a short
    /// idle timeout given alone never clashes with a default meant for the
    /// default idle timeout. A tenth of the idle timeout is the most a
    /// session may end early for want of a write (see the `policy` module of
    /// the core).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tessera_server::config::Config;
    /// let mut config = Config::default(); // idle 30 min
    /// assert_eq!(config.effective_touch_step(), Duration::from_secs(60));
    /// config.idle_timeout = Duration::from_secs(25);
    /// assert_eq!(config.effective_touch_step(), Duration::from_millis(2500));
    /// config.touch_step = Some(Duration::from_secs(5));
    /// assert_eq!(config.effective_touch_step(), Duration::from_secs(5));
    /// ```
    pub fn effective_touch_step(&self) -> Duration {
        self.touch_step.unwrap_or_else(|| {
            // Every class's idle timeout bounds the derived step, so a short
            // remember idle timeout given alone is never refused either.
            let idle = match self.remember_idle_timeout {
                Some(remember) => self.idle_timeout.min(remember),
                None => self.idle_timeout,
            };
            DEFAULT_TOUCH_STEP.min(idle / 10)
        })
    }

    /// The remember class's settings: both or neither, and a set
    /// `touch_step` shorter than its idle timeout.
    fn validate_remember(&self) -> Result<(), ConfigError> {
        match (self.remember_idle_timeout, self.remember_absolute_timeout) {
            (Some(_), None) | (None, Some(_)) => Err(ConfigError::Invalid(
                "set remember_idle_timeout and remember_absolute_timeout together to offer                  \"keep me signed in\", or neither"
                    .into(),
            )),
            (Some(idle), Some(_))
                if self.touch_step.is_some_and(|step| step >= idle) && !idle.is_zero() =>
            {
                Err(ConfigError::Invalid(format!(
                    "touch_step must be shorter than remember_idle_timeout ({}); leave \
                     touch_step unset to follow the idle timeouts",
                    duration::format(idle)
                )))
            }
            _ => Ok(()),
        }
    }

    /// Checks values no parser catches.
    ///
    /// Cross-field checks only ever compare values the operator set: a
    /// default derived from another setting follows it
    /// ([`Config::effective_touch_step`], [`Config::database_url`],
    /// [`Config::keys_path`]), so it cannot refuse a valid setting.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an unenforceable policy or nonsensical limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(step) = self.touch_step
            && step >= self.idle_timeout
            && !self.idle_timeout.is_zero()
        {
            return Err(ConfigError::Invalid(format!(
                "touch_step ({}) must be shorter than idle_timeout ({}); leave touch_step \
                 unset to follow the idle timeout",
                duration::format(step),
                duration::format(self.idle_timeout)
            )));
        }
        self.validate_remember()?;
        self.policy().validate()?;
        if self.sweep_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "sweep_interval must be positive".into(),
            ));
        }
        if self.body_limit == 0 {
            return Err(ConfigError::Invalid("body_limit must be positive".into()));
        }
        if self.header_read_timeout.is_zero()
            || self.request_body_timeout.is_zero()
            || self.max_connections == 0
        {
            return Err(ConfigError::Invalid(
                "header_read_timeout, request_body_timeout and max_connections must be positive"
                    .into(),
            ));
        }
        if self.login_max_failures_per_user == 0 || self.login_max_failures_per_ip == 0 {
            return Err(ConfigError::Invalid(
                "login_max_failures_per_user/ip must be positive".into(),
            ));
        }
        if self.store_pool_size == 0 {
            return Err(ConfigError::Invalid(
                "store_pool_size must be positive".into(),
            ));
        }
        if self.store_timeout.is_zero() || self.store_connect_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "store_timeout and store_connect_timeout must be positive".into(),
            ));
        }
        if crate::store_url::StoreKind::of(&self.store).is_none() {
            return Err(ConfigError::Invalid(format!(
                "unsupported store URL {:?}: {}",
                crate::store_url::redact(&self.store),
                crate::store_url::SUPPORTED
            )));
        }
        let database = self.database_url();
        if crate::db::data_url(&database).is_err() {
            return Err(ConfigError::Invalid(format!(
                "unsupported database URL {:?}: users and API keys live in SQLite \
                 (sqlite://PATH), PostgreSQL (postgres://…) or MySQL/MariaDB (mysql://…); \
                 point every instance at the same database",
                crate::store_url::redact(&database)
            )));
        }
        if self.reauth_window.is_zero() || self.login_failure_window.is_zero() {
            return Err(ConfigError::Invalid(
                "reauth_window and login_failure_window must be positive".into(),
            ));
        }
        if !matches!(
            self.token_algorithm.to_ascii_lowercase().as_str(),
            "eddsa" | "es256"
        ) {
            return Err(ConfigError::Invalid(format!(
                "token_algorithm {:?} must be eddsa or es256",
                self.token_algorithm
            )));
        }
        if self.access_token_lifetime < Duration::from_secs(1)
            || self.access_token_lifetime > Duration::from_secs(24 * 3600)
        {
            return Err(ConfigError::Invalid(
                "access_token_lifetime must be between 1s and 24h (keep it short: it is \
                 how long an access token outlives a revoked session)"
                    .into(),
            ));
        }
        if let Some(token) = &self.metrics_token
            && !token.is_unset()
            && !token.is_long_enough()
        {
            return Err(ConfigError::Invalid(format!(
                "metrics_token must be at least {} characters (e.g. openssl rand -hex 32)",
                MetricsToken::MIN_LEN
            )));
        }
        if self.token_client_id.is_empty()
            || self.token_client_id.len() > 256
            || self.token_client_id.chars().any(char::is_control)
        {
            return Err(ConfigError::Invalid(
                "token_client_id must be 1 to 256 bytes without control characters".into(),
            ));
        }
        if self.password_hash_concurrency == Some(0) {
            return Err(ConfigError::Invalid(
                "password_hash_concurrency must be positive".into(),
            ));
        }
        if self.login_limiter_memory < 64 * 1024 || self.max_session_data == 0 {
            return Err(ConfigError::Invalid(
                "login_limiter_memory must be at least 64 KiB and max_session_data positive".into(),
            ));
        }
        validate_cache(self)?;
        if !(Duration::from_secs(60)..=Duration::from_secs(3600))
            .contains(&self.dbsc_cookie_lifetime)
        {
            return Err(ConfigError::Invalid(
                "dbsc_cookie_lifetime must be between 1m and 1h".into(),
            ));
        }
        for origin in &self.trusted_origins {
            if !(origin.starts_with("https://") || origin.starts_with("http://")) {
                return Err(ConfigError::Invalid(format!(
                    "trusted origin {origin:?} must be scheme://host[:port]"
                )));
            }
        }
        Ok(())
    }

    /// The server database's URL: `database` if set; else the store's own
    /// database when the store is SQL — the same SQLite file, or the same
    /// PostgreSQL or MySQL/MariaDB database, so that instances on several
    /// machines sharing a store also share users and API keys without
    /// further configuration — an in-memory database with the `memory://`
    /// store, and `sqlite://tessera.db` (a file on this machine) with Redis.
    ///
    /// ```
    /// use tessera_server::config::Config;
    /// let mut config = Config::default();
    /// config.store = "sqlite:///var/lib/tessera/all.db".into();
    /// assert_eq!(config.database_url(), "sqlite:///var/lib/tessera/all.db");
    /// config.store = "postgres://tessera@db/tessera".into();
    /// assert_eq!(config.database_url(), "postgres://tessera@db/tessera");
    /// config.store = "redis://127.0.0.1:6379".into();
    /// assert_eq!(config.database_url(), "sqlite://tessera.db");
    /// config.database = Some("mysql://tessera@db/users".into());
    /// assert_eq!(config.database_url(), "mysql://tessera@db/users");
    /// ```
    pub fn database_url(&self) -> String {
        let shared = ["sqlite:", "postgres:", "postgresql:", "mysql:", "mariadb:"];
        match &self.database {
            Some(url) => url.clone(),
            None if shared.iter().any(|s| self.store.starts_with(s)) => self.store.clone(),
            None if self.store == "memory://" => String::from("sqlite::memory:"),
            None => String::from("sqlite://tessera.db"),
        }
    }

    /// The signing-keys directory: `keys_dir` if set; else `tessera-keys`
    /// beside the SQLite database file (`./tessera-keys` for a relative,
    /// in-memory, PostgreSQL or MySQL database: instances on several
    /// machines must then set `keys_dir` to a shared directory).
    ///
    /// ```
    /// use std::path::PathBuf;
    /// use tessera_server::config::Config;
    /// let mut config = Config::default();
    /// assert_eq!(config.keys_path(), PathBuf::from("tessera-keys"));
    /// config.store = "sqlite:///var/lib/tessera/all.db".into();
    /// assert_eq!(config.keys_path(), PathBuf::from("/var/lib/tessera/tessera-keys"));
    /// config.keys_dir = Some("/etc/tessera/keys".into());
    /// assert_eq!(config.keys_path(), PathBuf::from("/etc/tessera/keys"));
    /// ```
    pub fn keys_path(&self) -> std::path::PathBuf {
        if let Some(dir) = &self.keys_dir {
            return std::path::PathBuf::from(dir);
        }
        let database = self.database_url();
        let file = database
            .strip_prefix("sqlite://")
            .or_else(|| database.strip_prefix("sqlite:"))
            .unwrap_or("");
        let file = file.split('?').next().unwrap_or("");
        let parent = if file.is_empty() || file.starts_with(':') {
            None
        } else {
            Path::new(file).parent()
        };
        match parent {
            Some(p) if !p.as_os_str().is_empty() => p.join("tessera-keys"),
            _ => std::path::PathBuf::from("tessera-keys"),
        }
    }

    /// Where the first-start demo password is written when standard output
    /// is not a terminal: `demo_password_file` when set, else
    /// `tessera-demo-password` beside the SQLite database file, else in the
    /// working directory.
    ///
    /// ```
    /// use std::path::PathBuf;
    /// use tessera_server::config::Config;
    /// let mut config = Config::default();
    /// assert_eq!(config.demo_password_path(), PathBuf::from("tessera-demo-password"));
    /// config.store = "sqlite:///var/lib/tessera/all.db".into();
    /// assert_eq!(config.demo_password_path(), PathBuf::from("/var/lib/tessera/tessera-demo-password"));
    /// ```
    pub fn demo_password_path(&self) -> std::path::PathBuf {
        if let Some(file) = self.demo_password_file.as_deref().filter(|f| !f.is_empty()) {
            return std::path::PathBuf::from(file);
        }
        let dir = crate::files::sqlite_file(&self.database_url())
            .and_then(|file| file.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        dir.join("tessera-demo-password")
    }

    /// The metrics token, unless unset or empty.
    pub fn metrics_token(&self) -> Option<&MetricsToken> {
        self.metrics_token.as_ref().filter(|t| !t.is_unset())
    }

    /// The URL to print for people to open.
    pub fn display_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => format!("http://{bound}/"),
        }
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

pub mod optional_duration;

pub mod duration;

/// Checks the cache settings (also when the cache is off, so that turning
/// it on later cannot reveal a bad value).
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming the setting and the accepted range.
pub(crate) fn validate_cache(config: &Config) -> Result<(), ConfigError> {
    let staleness = config.cache_max_staleness;
    if !(values::MIN_STALENESS..=values::MAX_STALENESS).contains(&staleness) {
        return Err(ConfigError::Invalid(format!(
            "cache_max_staleness ({}) must be between {} and {}: it is how long a \
             revocation made on another instance may go unseen here when its \
             invalidation is lost",
            duration::format(staleness),
            duration::format(values::MIN_STALENESS),
            duration::format(values::MAX_STALENESS),
        )));
    }
    if config.cache_max_entries == 0 {
        return Err(ConfigError::Invalid(
            "cache_max_entries must be positive".into(),
        ));
    }
    if config.cache_max_bytes < values::MIN_BYTES {
        return Err(ConfigError::Invalid(format!(
            "cache_max_bytes ({}) must be at least {} (64 KiB)",
            config.cache_max_bytes,
            values::MIN_BYTES
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
