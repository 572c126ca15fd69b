//! Why a session ended, remembered after its record is gone.
//!
//! A person whose session stopped working deserves to be told why, in words
//! ("you were signed out because your password was changed"), and a backend
//! needs a code it can branch on. The record is gone, so the store keeps a
//! **tombstone** in its place: keyed by the same token hash, holding only
//! the [`Ended`] code, and expiring at the session's absolute deadline (when
//! the token would have stopped working anyway). Nothing secret is in it,
//! and tombstones are bounded like sessions: at most one per session, gone
//! by the session's absolute deadline. OWASP Session Management Cheat
//! Sheet ("Session Expiration": inform the user) and ASVS 5.0 V7.4 (session
//! termination).
//!
//! The client-facing codes ([`Ended::as_code`]) are `signed_out`,
//! `revoked`, `expired_idle` and `expired_absolute`; a token the store
//! knows nothing about is `missing`. A revocation also says who or what
//! revoked it ([`Revocation`]), for the text shown to the person.

use crate::policy::ExpiryReason;

/// Why a session ended.
///
/// ```
/// use tessera::ended::{Ended, Revocation};
/// let why = Ended::Revoked(Revocation::PasswordChanged);
/// assert_eq!(why.as_code(), "revoked");
/// assert_eq!(Ended::from_stored(&why.to_stored()), Some(why));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Ended {
    /// Its own sign-out.
    SignedOut,
    /// Something else ended it: another device, an administrator, a
    /// password change, …
    Revoked(Revocation),
    /// A deadline passed.
    Expired(ExpiryReason),
}

/// Who or what revoked a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Revocation {
    /// No more specific cause recorded.
    Other,
    /// The user ended it from another session (device list, "sign out
    /// everywhere else").
    OtherDevice,
    /// The user's password was changed (ASVS 5.0 V7.4.3).
    PasswordChanged,
    /// The account was disabled.
    Disabled,
    /// An administrator or a backend (`/v1`, the CLI) revoked it.
    Admin,
    /// A used refresh token was presented again (RFC 9700 §4.14.2).
    RefreshReuse,
    /// The user reached the maximum number of sessions.
    SessionLimit,
    /// A device-bound session was refreshed with a proof from another key
    /// (W3C DBSC): someone else holds its cookies.
    DbscKeyMismatch,
    /// An administrator or a backend signed everybody out (the global
    /// kill switch, ASVS 5.0 V7.4.5; see [`crate::not_before`]).
    Everyone,
}

impl Revocation {
    /// The cause as stored and as reported in `revoked_by`:
    /// `other`, `other_device`, `password_changed`, `disabled`, `admin`,
    /// `refresh_reuse`, `session_limit`, `dbsc_key_mismatch` or `everyone`.
    pub const fn as_code(self) -> &'static str {
        match self {
            Self::Other => "other",
            Self::OtherDevice => "other_device",
            Self::PasswordChanged => "password_changed",
            Self::Disabled => "disabled",
            Self::Admin => "admin",
            Self::RefreshReuse => "refresh_reuse",
            Self::SessionLimit => "session_limit",
            Self::DbscKeyMismatch => "dbsc_key_mismatch",
            Self::Everyone => "everyone",
        }
    }

    /// Parses [`Revocation::as_code`].
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "other" => Self::Other,
            "other_device" => Self::OtherDevice,
            "password_changed" => Self::PasswordChanged,
            "disabled" => Self::Disabled,
            "admin" => Self::Admin,
            "refresh_reuse" => Self::RefreshReuse,
            "session_limit" => Self::SessionLimit,
            "dbsc_key_mismatch" => Self::DbscKeyMismatch,
            "everyone" => Self::Everyone,
            _ => return None,
        })
    }
}

impl Ended {
    /// The client-facing `reason`: `signed_out`, `revoked`, `expired_idle`
    /// or `expired_absolute`.
    pub const fn as_code(self) -> &'static str {
        match self {
            Self::SignedOut => "signed_out",
            Self::Revoked(_) => "revoked",
            Self::Expired(reason) => reason.as_code(),
        }
    }

    /// The revocation cause, for a revoked session.
    pub const fn revocation(self) -> Option<Revocation> {
        match self {
            Self::Revoked(by) => Some(by),
            _ => None,
        }
    }

    /// The tombstone's stored form: the code, and for a revocation its
    /// cause after a colon (`revoked:password_changed`). At most 30 bytes
    /// of ASCII.
    pub fn to_stored(self) -> String {
        match self {
            Self::Revoked(by) => format!("revoked:{}", by.as_code()),
            other => other.as_code().to_owned(),
        }
    }

    /// Parses [`Ended::to_stored`]; `None` for anything else.
    pub fn from_stored(stored: &str) -> Option<Self> {
        Some(match stored {
            "signed_out" => Self::SignedOut,
            "expired_idle" => Self::Expired(ExpiryReason::Idle),
            "expired_absolute" => Self::Expired(ExpiryReason::Absolute),
            other => Self::Revoked(Revocation::from_code(other.strip_prefix("revoked:")?)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ending_round_trips_through_its_stored_form() {
        let all = [
            Ended::SignedOut,
            Ended::Expired(ExpiryReason::Idle),
            Ended::Expired(ExpiryReason::Absolute),
            Ended::Revoked(Revocation::Other),
            Ended::Revoked(Revocation::OtherDevice),
            Ended::Revoked(Revocation::PasswordChanged),
            Ended::Revoked(Revocation::Disabled),
            Ended::Revoked(Revocation::Admin),
            Ended::Revoked(Revocation::RefreshReuse),
            Ended::Revoked(Revocation::SessionLimit),
            Ended::Revoked(Revocation::Everyone),
            Ended::Revoked(Revocation::DbscKeyMismatch),
        ];
        for e in all {
            let stored = e.to_stored();
            assert!(stored.len() <= 30 && stored.is_ascii());
            assert_eq!(Ended::from_stored(&stored), Some(e));
        }
        assert_eq!(Ended::from_stored("revoked"), None);
        assert_eq!(Ended::from_stored("revoked:nonsense"), None);
        assert_eq!(Ended::from_stored(""), None);
    }
}
