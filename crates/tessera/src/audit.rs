//! Audit events: one structured `tracing` event per lifecycle or security
//! event, on the target `tessera::audit`.
//!
//! Events name sessions by their public handle and by a fingerprint of the
//! token hash — never by the token (OWASP Session Management Cheat Sheet:
//! log a hash of the ID). A subscriber with a JSON formatter turns them into
//! JSON log lines; filter on the target to route them to an audit sink.

use crate::record::SessionHandle;

/// The `tracing` target of every audit event.
pub const TARGET: &str = "tessera::audit";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditKind {
    /// A session was created.
    Created,
    /// A session got a new token (rotation, sign-in, re-authentication).
    Rotated,
    /// A session was ended by its holder (sign-out).
    Destroyed,
    /// A session ended through inactivity.
    ExpiredIdle,
    /// A session reached its absolute lifetime.
    ExpiredAbsolute,
    /// A session was ended by someone else (device list, admin, password
    /// change).
    Revoked,
    /// Several different session cookies were presented at once.
    AmbiguousCookie,
    /// A CSRF or origin check refused a request.
    CsrfRejected,
    /// The user re-authenticated (step-up).
    Reauthenticated,
    /// A refresh token was exchanged for a new one.
    Refreshed,
    /// A refresh token that had already been used was presented again: the
    /// whole family was revoked (RFC 9700 §4.14.2, suspected theft).
    RefreshReuseDetected,
    /// A sign-in was refused because the user already holds
    /// `max_sessions_per_user` sessions and the policy is `refuse_new`.
    SessionLimitRefused,
    /// A device-bound session (W3C DBSC) was refreshed with a proof from
    /// another key: the session was revoked.
    DbscKeyMismatch,
    /// A device-bound session was registered (W3C DBSC).
    DbscRegistered,
    /// The browser skipped a DBSC refresh (`Secure-Session-Skipped`).
    DbscRefreshSkipped,
    /// A request of a device-bound session without a live bound cookie
    /// (served in additive mode, refused in required mode).
    DbscUnboundRequest,
}

impl AuditKind {
    /// The event name as logged.
    ///
    /// ```
    /// assert_eq!(tessera::audit::AuditKind::ExpiredIdle.as_str(), "expired_idle");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Rotated => "rotated",
            Self::Destroyed => "destroyed",
            Self::ExpiredIdle => "expired_idle",
            Self::ExpiredAbsolute => "expired_absolute",
            Self::Revoked => "revoked",
            Self::AmbiguousCookie => "ambiguous_cookie",
            Self::CsrfRejected => "csrf_rejected",
            Self::Reauthenticated => "reauthenticated",
            Self::SessionLimitRefused => "session_limit_refused",
            Self::Refreshed => "refreshed",
            Self::RefreshReuseDetected => "refresh_reuse_detected",
            Self::DbscKeyMismatch => "dbsc_key_mismatch",
            Self::DbscRegistered => "dbsc_registered",
            Self::DbscRefreshSkipped => "dbsc_refresh_skipped",
            Self::DbscUnboundRequest => "dbsc_unbound_request",
        }
    }
}

/// Emits one audit event.
///
/// ```
/// use tessera::audit::{emit, AuditKind};
/// emit(AuditKind::Revoked, None, Some("alice"), "revoked by admin");
/// ```
pub fn emit(kind: AuditKind, handle: Option<&SessionHandle>, user: Option<&str>, detail: &str) {
    tracing::info!(
        target: TARGET,
        event = kind.as_str(),
        handle = handle.map(SessionHandle::as_str),
        user,
        detail,
    );
}
