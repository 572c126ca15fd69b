//! Store URLs: which backend a URL selects, and how to show one without
//! its password. A leaf: it depends on no other module of the server.

/// The store URL forms the server understands, for error messages.
pub const SUPPORTED: &str = "use sqlite://PATH, postgres://…, postgresql://…, mysql://…, \
                             mariadb://…, redis://…, rediss://…, \
                             redis-cluster://host:port,host:port,…, \
                             rediss-cluster://… (TLS) or memory://";

/// The backend a store URL selects, by its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreKind {
    /// `memory://`: in-process only.
    Memory,
    /// `sqlite:`: the embedded default.
    Sqlite,
    /// `postgres://`, `postgresql://`.
    Postgres,
    /// `mysql://`, `mariadb://`.
    MySql,
    /// `redis://`, `rediss://`.
    Redis,
    /// `redis-cluster://`, `rediss-cluster://` (TLS).
    RedisCluster,
}

impl StoreKind {
    /// The backend for `url`, or `None` for an unknown scheme.
    ///
    /// ```
    /// use tessera_server::store_url::StoreKind;
    /// assert_eq!(StoreKind::of("postgresql://db/tessera"), Some(StoreKind::Postgres));
    /// assert_eq!(StoreKind::of("mariadb://db/tessera"), Some(StoreKind::MySql));
    /// assert_eq!(StoreKind::of("redis-cluster://a:7000,b:7001"), Some(StoreKind::RedisCluster));
    /// assert_eq!(StoreKind::of("rediss-cluster://a:7000,b:7001"), Some(StoreKind::RedisCluster));
    /// assert_eq!(StoreKind::of("ftp://x"), None);
    /// ```
    pub fn of(url: &str) -> Option<Self> {
        if url == "memory://" {
            return Some(Self::Memory);
        }
        if url.starts_with("sqlite:") {
            return Some(Self::Sqlite);
        }
        let (scheme, _) = url.split_once("://")?;
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" | "mariadb" => Some(Self::MySql),
            "redis" | "rediss" => Some(Self::Redis),
            "redis-cluster" | "rediss-cluster" => Some(Self::RedisCluster),
            _ => None,
        }
    }
}

/// `url` with any password replaced by `***`, for messages and logs.
///
/// ```
/// use tessera_server::store_url::redact;
/// assert_eq!(redact("postgres://app:s3cret@db:5432/t"), "postgres://app:***@db:5432/t");
/// assert_eq!(redact("redis://:s3cret@cache:6379"), "redis://:***@cache:6379");
/// assert_eq!(redact("sqlite://tessera.db"), "sqlite://tessera.db");
/// ```
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The authority ends at the first '/' (or '?'); user info at its last '@'.
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => url.to_owned(),
    }
}
