//! The `TESSERA_*` environment variables: which ones are settings, which
//! were removed, and the unknown ones reported at start-up.

use super::values;

/// Environment variables read into the configuration (without the prefix,
/// lower-cased). Others with the `TESSERA_` prefix do not change the
/// configuration, so a variable meant for something else cannot break
/// start-up, but each is reported with a warning at start-up (see
/// [`unknown_env_vars`]), so a typo such as `TESSERA_IDEL_TIMEOUT` does not
/// silently leave the default in force; unknown TOML keys are refused.
pub(super) const ENV_KEYS: &[&str] = &[
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
pub(super) const REMOVED_KEYS: &[(&str, &str)] = &[(
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
