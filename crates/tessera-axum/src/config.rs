//! [`SessionConfig`]: how a [`SessionLayer`](crate::SessionLayer) finds the
//! session credential and guards unsafe requests.

use std::sync::Arc;
use tessera::cookie::CookieConfig;
use tessera::csrf::OriginCheck;

use axum::response::Response;
use tessera::dbsc::{Dbsc, DbscMode};

use crate::rejection::SessionRejection;

/// Default limit on a buffered `application/x-www-form-urlencoded` body when
/// the CSRF token has to be read from the `csrf_token` form field: 64 KiB.
pub const DEFAULT_CSRF_FORM_LIMIT: usize = 64 * 1024;

/// Configuration of one [`SessionLayer`](crate::SessionLayer).
///
/// Every default is the secure choice; each method weakens or widens one
/// thing explicitly. Apply differently configured layers to different route
/// groups (for example bearer tokens accepted under `/api` only).
///
/// ```
/// use tessera::cookie::{CookieConfig, SameSitePolicy};
/// use tessera_axum::SessionConfig;
///
/// let config = SessionConfig::default()
///     .with_cookie(CookieConfig::default().with_same_site(SameSitePolicy::Lax))
///     .with_trusted_origins(["https://admin.example.com"])
///     .accept_bearer(true);
/// assert!(config.accepts_bearer());
/// assert_eq!(config.cookie().name(), "__Host-session");
/// ```
#[derive(Debug, Clone)]
pub struct SessionConfig {
    cookie: CookieConfig,
    origins: OriginCheck,
    accept_bearer: bool,
    clear_site_data_on_logout: bool,
    csrf_form_limit: usize,
    dbsc: Option<Dbsc>,
    renderer: Option<Renderer>,
}

/// How refusals are rendered: the application's function, given the
/// rejection and whether the client wants JSON.
type RenderFn = dyn Fn(&SessionRejection, bool) -> Response + Send + Sync;

#[derive(Clone)]
struct Renderer(Arc<RenderFn>);

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Renderer")
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie: CookieConfig::default(),
            origins: OriginCheck::default(),
            accept_bearer: false,
            clear_site_data_on_logout: true,
            csrf_form_limit: DEFAULT_CSRF_FORM_LIMIT,
            dbsc: None,
            renderer: None,
        }
    }
}

impl SessionConfig {
    /// Sets the cookie name and attributes (default: `__Host-session`,
    /// Secure, HttpOnly, SameSite=Strict, Path=/, no Domain).
    pub fn with_cookie(mut self, cookie: CookieConfig) -> Self {
        self.cookie = cookie;
        self
    }

    /// Trusts extra origins (`scheme://host[:port]`) for unsafe requests,
    /// such as a sibling subdomain that posts to this one. The request's own
    /// origin is always accepted.
    pub fn with_trusted_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.origins = OriginCheck::new(origins);
        self
    }

    /// Sets the origin check directly.
    pub fn with_origin_check(mut self, check: OriginCheck) -> Self {
        self.origins = check;
        self
    }

    /// Accepts `Authorization: Bearer tss_…` as an alternative to the
    /// cookie (default off). A bearer-authenticated request carries no
    /// ambient authority, so it is exempt from the CSRF and origin checks
    /// and never receives `Set-Cookie`.
    pub fn accept_bearer(mut self, accept: bool) -> Self {
        self.accept_bearer = accept;
        self
    }

    /// Whether a sign-out also sends `Clear-Site-Data: "cookies"` (default
    /// true; OWASP Session Management Cheat Sheet). Note that the header
    /// clears every cookie of the site, not only the session cookie.
    pub fn clear_site_data_on_logout(mut self, clear: bool) -> Self {
        self.clear_site_data_on_logout = clear;
        self
    }

    /// Limits how much of an `application/x-www-form-urlencoded` body is
    /// buffered to find the `csrf_token` field (default
    /// [`DEFAULT_CSRF_FORM_LIMIT`]). A larger body is refused with 413.
    pub fn with_csrf_form_limit(mut self, bytes: usize) -> Self {
        self.csrf_form_limit = bytes;
        self
    }

    /// Device Bound Session Credentials ([`crate::dbsc`]) with `dbsc`: the
    /// layer offers registration on sign-in, classifies every request by
    /// its bound cookie and, in required mode, does not authenticate a
    /// bound session without one. Mount [`crate::dbsc::routes`] of the same
    /// engine inside the layer. An engine in [`DbscMode::Off`] changes
    /// nothing.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use tessera::dbsc::{Dbsc, DbscConfig, DbscMode, MemoryDbscStore};
    /// let dbsc = Dbsc::new(
    ///     DbscConfig { mode: DbscMode::Required, ..DbscConfig::default() },
    ///     Arc::new(MemoryDbscStore::new()),
    /// );
    /// let config = tessera_axum::SessionConfig::default().with_dbsc(dbsc);
    /// assert!(config.dbsc().is_some());
    /// ```
    pub fn with_dbsc(mut self, dbsc: Dbsc) -> Self {
        self.dbsc = (dbsc.config().mode != DbscMode::Off).then_some(dbsc);
        self
    }

    /// Renders every refusal of the layer — of its guard, its extractors,
    /// its commit, and the [`SessionRejection`]s handlers return — with
    /// `render(rejection, wants_json)` instead of
    /// [`SessionRejection::render`]: an application's own JSON shape or
    /// HTML error pages, without re-implementing any check or
    /// post-processing finished responses. The classification (status,
    /// codes) stays [`SessionRejection`]'s.
    ///
    /// ```
    /// use axum::response::{Html, IntoResponse};
    /// use tessera_axum::SessionConfig;
    /// let config = SessionConfig::default().with_renderer(|rejection, json| {
    ///     if json {
    ///         rejection.render(true)
    ///     } else {
    ///         (rejection.status(), Html(format!("<h1>{}</h1>", rejection.reason()))).into_response()
    ///     }
    /// });
    /// # let _ = config;
    /// ```
    pub fn with_renderer<F>(mut self, render: F) -> Self
    where
        F: Fn(&SessionRejection, bool) -> Response + Send + Sync + 'static,
    {
        self.renderer = Some(Renderer(Arc::new(render)));
        self
    }

    /// `rejection` rendered for a client that wants JSON (`json`) or not,
    /// by the configured renderer or [`SessionRejection::render`].
    pub fn render(&self, rejection: &SessionRejection, json: bool) -> Response {
        match &self.renderer {
            Some(Renderer(render)) => render(rejection, json),
            None => rejection.render(json),
        }
    }

    /// The DBSC engine, when device binding is on.
    pub fn dbsc(&self) -> Option<&Dbsc> {
        self.dbsc.as_ref()
    }

    /// The cookie configuration.
    pub fn cookie(&self) -> &CookieConfig {
        &self.cookie
    }

    /// The origin check.
    pub fn origin_check(&self) -> &OriginCheck {
        &self.origins
    }

    /// Whether bearer tokens are accepted.
    pub fn accepts_bearer(&self) -> bool {
        self.accept_bearer
    }

    /// Whether sign-out sends `Clear-Site-Data`.
    pub fn clears_site_data_on_logout(&self) -> bool {
        self.clear_site_data_on_logout
    }

    /// The form body limit for the CSRF field.
    pub fn csrf_form_limit(&self) -> usize {
        self.csrf_form_limit
    }
}
