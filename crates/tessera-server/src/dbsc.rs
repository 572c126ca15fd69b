//! Device Bound Session Credentials in `tessera serve` (`dbsc = "additive"`
//! or `"required"`; docs/dbsc.md).
//!
//! The protocol is [`tessera::dbsc`] and its HTTP side
//! [`tessera_axum::dbsc`]; this module only configures the engine from the
//! settings and applies its verdict on the surfaces that do not go through
//! the session layer: forward auth and `/v1/sessions/verify`. The site and
//! `/v1/requests/check` go through [`tessera::Session::with_dbsc`], the
//! very gate the layer uses.
//!
//! Every surface reports the request's **tier**: `bound` (a live bound
//! cookie of a device-bound session) or `unbound`; forward auth as the
//! `X-Tessera-Session-Tier` header, `/v1` in the answer's `tier`. A proxy
//! location or a backend call may demand `bound` for sensitive routes only
//! (`X-Tessera-Require-Tier: bound`, `"require_tier": "bound"`), whatever
//! the mode.

use std::sync::Arc;

use axum::http::HeaderMap;
use tessera::dbsc::{BoundState, Dbsc, DbscConfig, DbscMode, DbscStore, Tier};
use tessera::record::SessionRecord;

use crate::config::Config;
use crate::error::ApiError;
use crate::state::AppState;

/// Forward-auth response header naming the request's tier.
pub const TIER_HEADER: &str = "x-tessera-session-tier";

/// Forward-auth request header a proxy location sets to demand a bound
/// request (`bound`).
pub const REQUIRE_TIER_HEADER: &str = "x-tessera-require-tier";

/// Name of the bound cookie: `__Host-` prefixed (RFC 6265bis §4.1.3.2)
/// unless the server runs on plain HTTP for development, where browsers
/// refuse prefixed cookies.
///
/// ```
/// assert_eq!(tessera_server::dbsc::cookie_name(false), "__Host-tessera-dbsc");
/// assert_eq!(tessera_server::dbsc::cookie_name(true), "tessera-dbsc");
/// ```
pub fn cookie_name(insecure_http: bool) -> &'static str {
    if insecure_http {
        "tessera-dbsc"
    } else {
        "__Host-tessera-dbsc"
    }
}

/// The DBSC engine the settings ask for, over `store`; `None` when
/// `dbsc = "off"`.
///
/// ```
/// use std::sync::Arc;
/// use tessera::dbsc::{DbscMode, MemoryDbscStore};
/// use tessera_server::config::Config;
/// let store = Arc::new(MemoryDbscStore::new());
/// assert!(tessera_server::dbsc::engine(&Config::default(), store.clone()).is_none());
/// let on = Config { dbsc: DbscMode::Additive, ..Config::default() };
/// let engine = tessera_server::dbsc::engine(&on, store).ok_or("DBSC is on")?;
/// assert_eq!(engine.config().registration_path, "/dbsc/register");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn engine(config: &Config, store: Arc<dyn DbscStore>) -> Option<Dbsc> {
    if config.dbsc == DbscMode::Off {
        return None;
    }
    let settings = DbscConfig {
        mode: config.dbsc,
        cookie_lifetime: config.dbsc_cookie_lifetime,
        cookie_name: cookie_name(config.insecure_http).to_owned(),
        secure: !config.insecure_http,
        ..DbscConfig::default()
    };
    Some(Dbsc::new(settings, store))
}

/// A tier a caller demands, from its wire spelling: `bound` or `unbound`
/// (which demands nothing).
///
/// # Errors
///
/// 400 `invalid_tier` for anything else.
pub fn parse_tier(value: &str) -> Result<Tier, ApiError> {
    match value.trim() {
        "bound" => Ok(Tier::Bound),
        "unbound" => Ok(Tier::Unbound),
        _ => Err(ApiError::bad_request(
            "invalid_tier",
            "the required tier must be \"bound\" or \"unbound\"",
        )),
    }
}

/// Classifies a loaded session's request by the bound cookie in
/// `cookie_headers` (or `cookie_value`), applies the mode and the demanded
/// tier, and returns the tier to report.
///
/// # Errors
///
/// 401 `device_unbound` when the mode or `require` refuses the request;
/// 503 on store errors.
pub async fn admit(
    state: &AppState,
    record: &SessionRecord,
    bound_cookie: Option<&str>,
    require: Option<Tier>,
) -> Result<Tier, ApiError> {
    let bound = match &state.dbsc {
        Some(engine) => {
            let bound = engine
                .classify(&state.manager, record, bound_cookie)
                .await
                .map_err(|e| ApiError::from(tessera::SessionError::Store(e)))?;
            if !engine.admits(bound) {
                return Err(ApiError::unauthenticated("device_unbound"));
            }
            bound
        }
        None => BoundState::Unbound,
    };
    let tier = bound.tier();
    if require == Some(Tier::Bound) && tier != Tier::Bound {
        return Err(ApiError::unauthenticated("device_unbound"));
    }
    Ok(tier)
}

/// The bound cookie's value in a forwarded request's `Cookie` headers.
pub fn bound_cookie(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let engine = state.dbsc.as_ref()?;
    tessera_axum::dbsc::cookie_value(headers, &engine.config().cookie_name)
}
