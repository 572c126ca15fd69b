//! What every request handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tessera::SessionManager;
use tessera::cookie::CookieConfig;
use tessera::csrf::OriginCheck;

use crate::api_keys::ApiKeys;
use crate::config::Config;
use crate::keys::SigningKeys;
use crate::ratelimit::LoginLimiter;
use crate::users::Users;

/// Shared server state. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// The session lifecycle.
    pub manager: SessionManager,
    /// User accounts.
    pub users: Users,
    /// Each user's recent security events.
    pub activity: crate::activity::Activity,
    /// `/v1` API keys.
    pub keys: ApiKeys,
    /// Session cookie name and attributes.
    pub cookie: CookieConfig,
    /// Fetch-Metadata / Origin check for unsafe requests.
    pub origin: OriginCheck,
    /// Sign-in failure counters.
    pub limiter: LoginLimiter,
    /// Access-token signing keys (issuer, verifier, JWKS).
    pub signing: SigningKeys,
    /// Prometheus renderer, when metrics are installed.
    pub metrics: Option<PrometheusHandle>,
    /// The session cache, when `cache = "on"` (its counters go to
    /// `/metrics`).
    pub cache: Option<Arc<crate::cache::SessionCache>>,
    /// The DBSC engine, when `dbsc` is `additive` or `required`
    /// ([`crate::dbsc`]).
    pub dbsc: Option<tessera::dbsc::Dbsc>,
    /// The session store (its DBSC rows are swept with the sessions).
    pub store: crate::store::SessionStore,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
