//! Server audit events, on the same `tracing` target as the core's
//! ([`tessera::audit::TARGET`]), so one filter routes every lifecycle and
//! security event to the audit sink as a JSON line.
//!
//! Fields are the event name, the user name, the client IP and a short
//! detail. Never a token, a password or a CSRF token (OWASP Logging Cheat
//! Sheet: do not log session identifiers or credentials).

/// A server-side security event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A sign-in succeeded.
    LoginSucceeded,
    /// A sign-in was refused (unknown user, wrong password, disabled user:
    /// the log says which; the client is never told).
    LoginFailed,
    /// A sign-in was refused because of too many failures.
    RateLimited,
    /// A CSRF or origin check refused a request.
    CsrfRejected,
    /// A re-authentication was refused.
    ReauthFailed,
    /// A user changed their password.
    PasswordChanged,
    /// A `/v1` request presented a missing or unknown API key.
    ApiKeyRejected,
    /// A `/v1` caller revoked sessions.
    ApiRevoked,
}

impl ServerEvent {
    /// The event name as logged.
    ///
    /// ```
    /// assert_eq!(tessera_server::audit::ServerEvent::LoginFailed.as_str(), "login_failed");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::RateLimited => "rate_limited",
            Self::CsrfRejected => "csrf_rejected",
            Self::ReauthFailed => "reauth_failed",
            Self::PasswordChanged => "password_changed",
            Self::ApiKeyRejected => "api_key_rejected",
            Self::ApiRevoked => "api_revoked",
        }
    }
}

/// Emits one audit event.
///
/// ```
/// use tessera_server::audit::{emit, ServerEvent};
/// emit(ServerEvent::LoginFailed, Some("alice"), "192.0.2.1".parse().ok(), "wrong password");
/// ```
pub fn emit(event: ServerEvent, user: Option<&str>, ip: Option<std::net::IpAddr>, detail: &str) {
    tracing::info!(
        target: tessera::audit::TARGET,
        event = event.as_str(),
        user,
        ip = ip.map(tracing::field::display),
        detail,
    );
}
