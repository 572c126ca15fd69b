//! The one path every password check of the server takes: sign-in, the
//! `/token` password grant, re-authentication, password change and the
//! device list's revoke.
//!
//! In order, and each step only if the previous one passed:
//!
//! 1. the user name is checked for shape ([`check_user_name`]) — before it
//!    reaches a counter, a hash or a log line;
//! 2. the attempt is reserved in the [`LoginLimiter`](crate::ratelimit)
//!    (an atomic count; 429 with `Retry-After` past the budget);
//! 3. the password is verified, which takes a slot of the hashing gate
//!    ([`crate::admission`]; 503 with `Retry-After` when full);
//! 4. the reservation is settled: kept for a wrong password, given back for
//!    a right one or for a check that never ran.
//!
//! Reserving before verifying is what makes the budget hold under
//! concurrency (OWASP Authentication Cheat Sheet, "Login Throttling";
//! NIST SP 800-63B §5.2.2 bounds the failed attempts per account).

use axum::http::StatusCode;

use crate::audit::{self, ServerEvent};
use crate::error::ApiError;
use crate::ratelimit::{LimitError, Limited};
use crate::state::AppState;
use crate::users::UserError;

/// The one message every failed sign-in gets, whatever the cause (OWASP
/// Authentication Cheat Sheet: no user enumeration through messages).
pub const GENERIC_FAILURE: &str = "Invalid user name or password.";

/// Longest user name accepted at sign-in, in bytes.
pub const MAX_USER_NAME_BYTES: usize = 256;

/// Where a password was presented (the audit event's detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Door {
    /// `POST /login`.
    SignIn,
    /// `POST /token`, `grant_type=password`.
    TokenGrant,
    /// `POST /reauth`.
    Reauth,
    /// `POST /account/password` (the current password).
    PasswordChange,
    /// Revoking a session from the device list.
    Revoke,
}

impl Door {
    fn detail(self) -> &'static str {
        match self {
            Self::SignIn => "sign-in",
            Self::TokenGrant => "token endpoint",
            Self::Reauth => "reauth",
            Self::PasswordChange => "password change",
            Self::Revoke => "revoke",
        }
    }

    fn failure_event(self) -> ServerEvent {
        match self {
            Self::SignIn | Self::TokenGrant => ServerEvent::LoginFailed,
            Self::Reauth | Self::PasswordChange | Self::Revoke => ServerEvent::ReauthFailed,
        }
    }
}

/// Why a password check did not pass.
#[derive(Debug)]
#[non_exhaustive]
pub enum CheckError {
    /// The user name is empty, longer than [`MAX_USER_NAME_BYTES`] or holds
    /// a control character (400; nothing counted, hashed or logged).
    InvalidName,
    /// Too many attempts (429).
    Limited(Limited),
    /// The hashing gate is full (503 with `Retry-After`; nothing counted).
    Busy,
    /// Wrong password, unknown or disabled user (401; counted, audited).
    Wrong,
    /// The database or the shared counters failed (503).
    Unavailable,
}

impl CheckError {
    /// The HTTP error for the site's doors; a wrong password gets
    /// `wrong_message`.
    pub fn into_api(self, wrong_message: &str) -> ApiError {
        match self {
            Self::InvalidName => ApiError::bad_request(
                "invalid_user",
                format!(
                    "user names are 1 to {MAX_USER_NAME_BYTES} bytes without control characters"
                ),
            ),
            Self::Limited(l) => {
                let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited")
                    .message("too many failed attempts; try again later");
                e.retry_after = Some(retry_secs(l.retry_after));
                e
            }
            Self::Busy => ApiError::busy(),
            Self::Wrong => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials")
                .message(wrong_message),
            Self::Unavailable => ApiError::unavailable(),
        }
    }
}

/// Whole seconds to wait, rounded up, for `Retry-After`.
pub fn retry_secs(d: std::time::Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// Checks the shape of a user name given at sign-in: 1 to
/// [`MAX_USER_NAME_BYTES`] bytes, no control characters (so it cannot
/// break a log line or a terminal, and costs a bounded amount to count).
///
/// ```
/// use tessera_server::password_check::check_user_name;
/// assert!(check_user_name("alice@example.com"));
/// assert!(!check_user_name(""));
/// assert!(!check_user_name("alice\n{\"event\":\"login_succeeded\"}"));
/// assert!(!check_user_name(&"a".repeat(257)));
/// ```
pub fn check_user_name(name: &str) -> bool {
    (1..=MAX_USER_NAME_BYTES).contains(&name.len()) && !name.chars().any(char::is_control)
}

/// Checks `password` for `user`, presented from `ip` through `door`, on
/// the one path described in the [module docs](self). Audits refusals and
/// failures; the caller audits a success.
///
/// # Errors
///
/// [`CheckError`], in the order of the steps.
pub async fn check_password(
    state: &AppState,
    user: &str,
    ip: Option<std::net::IpAddr>,
    password: &str,
    door: Door,
) -> Result<(), CheckError> {
    if !check_user_name(user) {
        return Err(CheckError::InvalidName);
    }
    let attempt = match state.limiter.reserve(user, ip).await {
        Ok(attempt) => attempt,
        Err(LimitError::Limited(limited)) => {
            let by = if limited.by_user {
                "per user"
            } else {
                "per ip"
            };
            audit::emit(
                ServerEvent::RateLimited,
                Some(user),
                ip,
                &format!("{}, {by}", door.detail()),
            );
            return Err(CheckError::Limited(limited));
        }
        Err(e) => {
            tracing::error!(error = %e, "sign-in limiter unavailable");
            return Err(CheckError::Unavailable);
        }
    };
    let verified = state.users.verify(user, password).await;
    let settled = match &verified {
        Ok(true) => state.limiter.succeeded(attempt).await,
        Ok(false) => {
            state.limiter.failed(attempt);
            Ok(())
        }
        // Nothing was checked: the attempt is not held against anyone.
        Err(_) => state.limiter.cancel(attempt).await,
    };
    if let Err(e) = settled {
        tracing::error!(error = %e, "sign-in limiter unavailable");
    }
    match verified {
        Ok(true) => Ok(()),
        Ok(false) => {
            audit::emit(door.failure_event(), Some(user), ip, door.detail());
            Err(CheckError::Wrong)
        }
        Err(UserError::Busy(_)) => Err(CheckError::Busy),
        Err(e) => {
            tracing::error!(error = %e, "user database failure");
            Err(CheckError::Unavailable)
        }
    }
}
