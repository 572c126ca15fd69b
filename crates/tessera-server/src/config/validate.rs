//! Checks of values no parser catches: cross-field rules and ranges.

use std::time::Duration;

use super::values::MetricsToken;
use super::{Config, ConfigError, duration, values};

impl Config {
    /// The remember class's settings: both or neither, and a set
    /// `touch_step` shorter than its idle timeout.
    fn validate_remember(&self) -> Result<(), ConfigError> {
        match (self.remember_idle_timeout, self.remember_absolute_timeout) {
            (Some(_), None) | (None, Some(_)) => Err(ConfigError::Invalid(
                "set remember_idle_timeout and remember_absolute_timeout together to offer \
                 \"keep me signed in\", or neither"
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
}

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
