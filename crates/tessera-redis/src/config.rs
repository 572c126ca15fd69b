//! Connection options and URL parsing.

use std::time::Duration;

use fred::types::config::{Config, ServerConfig};
use tessera::error::StoreError;

/// Options of a [`crate::RedisStore`].
///
/// ```
/// use std::time::Duration;
/// use tessera_redis::RedisOptions;
///
/// let options = RedisOptions::default()
///     .with_key_prefix("myapp:sessions:")
///     .with_response_timeout(Duration::from_millis(500));
/// assert_eq!(options.key_prefix(), "myapp:sessions:");
/// ```
#[derive(Debug, Clone)]
pub struct RedisOptions {
    key_prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    operation_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: String::from("tessera:"),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(5),
        }
    }
}

impl RedisOptions {
    /// Prefix of every key this store writes (default `tessera:`). Several
    /// applications (or test runs) can share one Redis with different
    /// prefixes. It must not contain `{` or `}`: those delimit Redis
    /// Cluster hash tags.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How long to wait for a TCP (and TLS) connection (default 5 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for the answer to one Redis command (default 2 s),
    /// including time spent queued while the client reconnects. A hung or
    /// unreachable Redis turns into [`StoreError::Timeout`] after this, never
    /// into a hung request.
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Upper bound on one whole store operation, which may take several
    /// commands (default 5 s).
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The per-command response timeout.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// The per-operation timeout.
    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.key_prefix.contains(['{', '}']) {
            return Err(config_error("the key prefix must not contain '{' or '}'"));
        }
        for (name, d) in [
            ("connect", self.connect_timeout),
            ("response", self.response_timeout),
            ("operation", self.operation_timeout),
        ] {
            if d.is_zero() {
                return Err(config_error(format!("the {name} timeout must not be zero")));
            }
        }
        Ok(())
    }
}

pub(crate) fn config_error(msg: impl Into<String>) -> StoreError {
    StoreError::Backend(msg.into().into())
}

/// Parses `redis://`, `rediss://`, `redis-cluster://h:p,h:p,…` and
/// `rediss-cluster://h:p,…` (TLS) URLs.
pub(crate) fn parse_url(url: &str) -> Result<Config, StoreError> {
    if let Some(rest) = url.strip_prefix("redis-cluster://") {
        return parse_cluster(rest, false);
    }
    if let Some(rest) = url.strip_prefix("rediss-cluster://") {
        if !cfg!(feature = "tls") {
            return Err(config_error(
                "rediss-cluster:// needs the `tls` feature of tessera-redis",
            ));
        }
        return parse_cluster(rest, true);
    }
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(config_error(
            "unsupported Redis URL: expected redis://, rediss://, redis-cluster:// or \
             rediss-cluster://",
        ));
    }
    if url.starts_with("rediss://") && !cfg!(feature = "tls") {
        return Err(config_error(
            "rediss:// needs the `tls` feature of tessera-redis",
        ));
    }
    Config::from_url_centralized(url).map_err(|e| config_error(format!("invalid Redis URL: {e}")))
}

/// `[user[:password]@]host:port,host:port,…` — the seed nodes of a cluster;
/// with `tls`, every node connection uses TLS, verified against the
/// system's trust store (`SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured) with
/// the node's address as the server name: the nodes' certificates must name
/// the addresses the cluster announces (IP SANs, or `cluster-announce-hostname`).
fn parse_cluster(rest: &str, tls: bool) -> Result<Config, StoreError> {
    let rest = rest.trim_end_matches('/');
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (Some(auth), hosts),
        None => (None, rest),
    };
    let mut nodes = Vec::new();
    for part in hosts.split(',').filter(|p| !p.is_empty()) {
        let (host, port) = part
            .rsplit_once(':')
            .ok_or_else(|| config_error(format!("cluster node '{part}' needs host:port")))?;
        let port: u16 = port
            .parse()
            .map_err(|_| config_error(format!("cluster node '{part}' has an invalid port")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(config_error(format!("cluster node '{part}' has no host")));
        }
        nodes.push((host.to_owned(), port));
    }
    if nodes.is_empty() {
        return Err(config_error(
            "redis-cluster:// needs at least one host:port",
        ));
    }
    let (username, password) = match auth {
        None => (None, None),
        Some(a) => match a.split_once(':') {
            Some((u, p)) => ((!u.is_empty()).then(|| u.to_owned()), Some(p.to_owned())),
            None => (Some(a.to_owned()), None),
        },
    };
    #[allow(unused_mut)] // assigned only with the `tls` feature
    let mut config = Config {
        server: ServerConfig::new_clustered(nodes),
        username,
        password,
        ..Config::default()
    };
    #[cfg(feature = "tls")]
    if tls {
        let connector = fred::types::config::TlsConnector::default_rustls()
            .map_err(|e| config_error(format!("cannot set up TLS: {e}")))?;
        config.tls = Some(connector.into());
    }
    #[cfg(not(feature = "tls"))]
    let _ = tls;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_parse() {
        let c = parse_url("redis-cluster://127.0.0.1:7000,127.0.0.1:7001,[::1]:7002").unwrap();
        match c.server {
            ServerConfig::Clustered { hosts, .. } => {
                assert_eq!(hosts.len(), 3);
                assert_eq!(hosts[2].port, 7002);
                assert_eq!(&*hosts[2].host, "::1");
            }
            other => panic!("expected a cluster, got {other:?}"),
        }
        let c = parse_url("redis-cluster://u:secret@h:1").unwrap();
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("secret"));
    }

    #[test]
    fn rediss_cluster_urls_use_tls_and_redis_cluster_urls_do_not() {
        let plain = parse_url("redis-cluster://127.0.0.1:7000,127.0.0.1:7001").unwrap();
        assert!(!plain.uses_tls());
        let secure = parse_url("rediss-cluster://u:secret@127.0.0.1:7000,[::1]:7001");
        if cfg!(feature = "tls") {
            let secure = secure.unwrap();
            assert!(secure.uses_tls());
            assert!(secure.server.is_clustered());
            assert_eq!(secure.password.as_deref(), Some("secret"));
        } else {
            let err = secure.unwrap_err().to_string();
            assert!(err.contains("tls"), "{err}");
        }
        assert!(parse_url("rediss-cluster://").is_err());
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in [
            "redis-cluster://",
            "redis-cluster://host",
            "redis-cluster://host:notaport",
            "http://x:1",
            "postgres://x",
        ] {
            assert!(parse_url(url).is_err(), "{url} must be refused");
        }
        assert!(parse_url("redis://127.0.0.1:6380/2").is_ok());
    }

    #[test]
    fn braces_in_the_prefix_are_refused() {
        assert!(
            RedisOptions::default()
                .with_key_prefix("a{b")
                .validate()
                .is_err()
        );
        assert!(RedisOptions::default().validate().is_ok());
        assert!(
            RedisOptions::default()
                .with_response_timeout(Duration::ZERO)
                .validate()
                .is_err()
        );
    }
}
