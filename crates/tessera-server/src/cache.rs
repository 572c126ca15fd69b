//! The per-instance session cache (`cache = "on"`): its settings, and the
//! invalidation channel each store gets.
//!
//! The cache itself is the core's [`tessera::cache::CachedStore`]; this
//! module only decides how the server builds it:
//!
//! | store | channel | a change made by another process is seen here |
//! | --- | --- | --- |
//! | `redis://`, `redis-cluster://` | pub/sub ([`tessera_redis::RedisChannel`]) | when its message arrives |
//! | `postgres://` | `LISTEN/NOTIFY` ([`tessera_sql::PgChannel`]) | when its notification arrives |
//! | `mysql://`, `mariadb://` | none: polling fallback | within `cache_max_staleness` |
//! | `sqlite://` | none: polling fallback | within `cache_max_staleness` |
//! | `memory://` | none needed | at once (no other process can write) |
//!
//! Whatever the channel does, no entry is served once older than
//! `cache_max_staleness`: that is the stated bound of docs/design.md, invariant 13,
//! and a lost subscription flushes the cache and bypasses it until it is
//! back (see the core's `cache` module).
//!
//! **Why SQLite is accepted rather than refused.** Several processes may
//! write one SQLite file: the `tessera` CLI above all (`sessions revoke`,
//! `user disable`), and SQLite has no notification channel. Refusing the
//! cache there would make one configuration file start in production
//! (PostgreSQL) and fail in development (SQLite); accepting it silently
//! would hide that a CLI revocation is no longer immediate. So it is
//! accepted with the same explicit, configurable bound as MySQL, and a
//! start-up warning names it. The cache buys little on SQLite (a read is a
//! local file access, not a network round trip): leave it off there unless
//! measured otherwise.
//!
//! **The CLI always publishes.** On a store with a channel, the CLI's
//! commands publish their invalidations whatever its own `cache` setting
//! (see [`for_cli`]), so `tessera sessions revoke` is honoured by every
//! instance as fast as a revocation through the API. An *instance* with
//! the cache off does not publish (that would cost every deployment a
//! message per write); while a fleet is switched over, revocations through
//! such an instance reach the cached ones within `cache_max_staleness`.

use std::sync::Arc;

use tessera::cache::{CacheConfig, CachedStore, Invalidation};

use crate::config::{Config, duration};
use crate::metrics::MeteredStore;
use crate::store_url::StoreKind;

/// The cache as the server builds it: in front of the metered store, so
/// the store-latency metrics count only the calls that reach the store
/// (a hit costs no store command and is not counted there).
pub type SessionCache = CachedStore<MeteredStore>;

pub use crate::config::values::{CacheMode, MAX_STALENESS, MIN_BYTES, MIN_STALENESS};

/// The core's cache bounds from the settings.
///
/// ```
/// use std::time::Duration;
/// use tessera_server::config::Config;
/// let config = Config { cache_max_staleness: Duration::from_millis(250), ..Config::default() };
/// let cache = tessera_server::cache::cache_config(&config);
/// assert_eq!(cache.max_staleness, Duration::from_millis(250));
/// assert_eq!(cache.max_entries, 100_000);
/// ```
pub fn cache_config(config: &Config) -> CacheConfig {
    CacheConfig {
        max_entries: config.cache_max_entries,
        max_bytes: config.cache_max_bytes,
        max_staleness: config.cache_max_staleness,
    }
}

/// The configuration a CLI command runs with: on a store with an
/// invalidation channel (Redis, PostgreSQL) the cache is turned on, so
/// that the command's changes are published to the instances that cache,
/// whatever this process's own `cache` setting.
///
/// ```
/// use tessera_server::cache::{CacheMode, for_cli};
/// use tessera_server::config::Config;
/// let pg = Config { store: "postgres://db/app".into(), ..Config::default() };
/// assert_eq!(for_cli(pg).cache, CacheMode::On);
/// assert_eq!(for_cli(Config::default()).cache, CacheMode::Off); // SQLite
/// ```
pub fn for_cli(mut config: Config) -> Config {
    if matches!(
        StoreKind::of(&config.store),
        Some(StoreKind::Postgres | StoreKind::Redis | StoreKind::RedisCluster)
    ) {
        config.cache = CacheMode::On;
    }
    config
}

/// How the cache of a store hears about other processes' changes.
#[non_exhaustive]
pub enum Channel {
    /// A notification channel (Redis pub/sub, PostgreSQL `LISTEN/NOTIFY`),
    /// named for the log.
    Live(Arc<dyn Invalidation>, &'static str),
    /// No channel: the polling fallback bounded by `cache_max_staleness`.
    Polling,
    /// No channel needed: no other process can write (`memory://`).
    Private,
}

/// Wraps `metered` in the cache when `cache = "on"`, with `channel`, and
/// logs how it is invalidated (a warning for the polling fallback). The
/// cache decides "near a deadline" by the session manager's clock
/// ([`ServerClock`](crate::clock::ServerClock)).
pub fn wrap(
    config: &Config,
    metered: &Arc<MeteredStore>,
    channel: Channel,
) -> Option<Arc<SessionCache>> {
    if !config.cache.is_on() {
        return None;
    }
    let clock = Arc::new(crate::clock::ServerClock::from_env());
    let bounds = cache_config(config);
    let staleness = duration::format(bounds.max_staleness);
    let channel = match channel {
        Channel::Live(channel, name) => {
            tracing::info!(
                invalidation = name,
                max_staleness = %staleness,
                "session cache on"
            );
            Some(channel)
        }
        Channel::Polling => {
            tracing::warn!(
                max_staleness = %staleness,
                "session cache on without an invalidation channel (this store has none): \
                 a session revoked by another instance or by the CLI is refused here only \
                 once its cached copy is cache_max_staleness ({staleness}) old"
            );
            None
        }
        Channel::Private => {
            tracing::info!(
                invalidation = "none needed (memory store)",
                max_staleness = %staleness,
                "session cache on"
            );
            None
        }
    };
    Some(Arc::new(CachedStore::with_clock(
        metered.clone(),
        bounds,
        channel,
        clock,
    )))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn cache_settings_out_of_range_are_refused_with_their_name() {
        let ok = Config::default();
        assert!(crate::config::validate::validate_cache(&ok).is_ok());
        for (config, name) in [
            (
                Config {
                    cache_max_staleness: Duration::ZERO,
                    ..Config::default()
                },
                "cache_max_staleness",
            ),
            (
                Config {
                    cache_max_staleness: Duration::from_secs(3600),
                    ..Config::default()
                },
                "cache_max_staleness",
            ),
            (
                Config {
                    cache_max_entries: 0,
                    ..Config::default()
                },
                "cache_max_entries",
            ),
            (
                Config {
                    cache_max_bytes: 1000,
                    ..Config::default()
                },
                "cache_max_bytes",
            ),
        ] {
            let err = crate::config::validate::validate_cache(&config)
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn the_cli_publishes_only_where_there_is_a_channel() {
        for (store, mode) in [
            ("redis://127.0.0.1:6379", CacheMode::On),
            ("redis-cluster://a:7000,b:7001", CacheMode::On),
            ("postgresql://db/app", CacheMode::On),
            ("mysql://db/app", CacheMode::Off),
            ("sqlite://tessera.db", CacheMode::Off),
            ("memory://", CacheMode::Off),
        ] {
            let config = Config {
                store: store.into(),
                ..Config::default()
            };
            assert_eq!(for_cli(config).cache, mode, "{store}");
        }
    }
}
