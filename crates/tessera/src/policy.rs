//! Timeouts and the touch policy (docs/design.md, invariants 3 and 4).
//!
//! Every session has two deadlines, both enforced on the server at every
//! request:
//!
//! - the **idle** deadline, `last activity + idle_timeout`, which slides
//!   forward with activity;
//! - the **absolute** deadline, `created + absolute_timeout`, which never
//!   moves (ASVS 5.0 V7.3.2). Only a fresh sign-in starts a new one.
//!
//! The defaults follow NIST SP 800-63B's re-authentication rule for AAL2 (at
//! most 12 hours overall, 30 minutes of inactivity) and sit inside the
//! ranges of the OWASP Session Management Cheat Sheet (idle 15–30 minutes for
//! low-risk applications, absolute 4–8 hours for an office-day application).
//! High-value applications should shorten both (the cheat sheet suggests 2–5
//! minutes idle).
//!
//! The **touch step** keeps read-only requests cheap: the idle deadline is
//! written back only when it would move by more than `touch_step`, so a burst
//! of reads costs one write, not one per request (the failure priced at
//! thousands a year in express-session#891). The idle timeout is thereby
//! enforced with at most `touch_step` of slack in the user's *disfavour*:
//! a session may expire up to `touch_step` early, never late.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// How long sessions live and how often activity is written back.
///
/// ```
/// use std::time::Duration;
/// use tessera::policy::SessionPolicy;
///
/// let policy = SessionPolicy::default()
///     .with_idle_timeout(Duration::from_secs(5 * 60))
///     .with_absolute_timeout(Duration::from_secs(4 * 3600));
/// assert!(policy.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionPolicy {
    /// Inactivity after which a session ends. Default 30 minutes.
    pub idle_timeout: Duration,
    /// Lifetime after which a session ends whatever its activity. Default 12 hours.
    pub absolute_timeout: Duration,
    /// A read-only request writes the new idle deadline only if it moves by
    /// more than this. Default 60 seconds. Zero writes on every request.
    pub touch_step: Duration,
    /// How many concurrent sessions one user may hold; `None` for no limit.
    /// What happens at the limit is [`SessionPolicy::session_limit_action`]
    /// (ASVS 5.0 V7.1.2 asks that both be documented). Default `None`.
    pub max_sessions_per_user: Option<usize>,
    /// What a new session does when its user already holds
    /// `max_sessions_per_user`: evict the oldest (the default) or be
    /// refused.
    pub session_limit_action: SessionLimitAction,
    /// How long a used refresh token may be presented again and get the
    /// same child back (lost responses, racing tabs) instead of counting as
    /// theft. Default 10 seconds; zero disables it. See [`crate::refresh`].
    pub refresh_grace: Duration,
    /// Largest session data, as the bytes of its JSON encoding, that
    /// creating a session or changing its data may leave behind; checked
    /// after the changes are merged onto the stored data, inside the atomic
    /// write, so concurrent writers cannot add up past it. `None` for no
    /// limit (the default; the server sets 16 KiB). Bounds what one client
    /// can make every later request load (OWASP Denial of Service Cheat
    /// Sheet).
    pub max_data_bytes: Option<usize>,
    /// Timeouts of the [`SessionClass::Remember`] class ("keep me signed
    /// in"); `None` (the default) leaves the class off, and asking for it is
    /// refused. See [`SessionClass`].
    pub remember: Option<Lifetime>,
}

/// Default of [`SessionPolicy::refresh_grace`], the grace period for
/// retried refreshes (see [`crate::refresh`]).
pub const DEFAULT_REFRESH_GRACE: Duration = Duration::from_secs(10);

/// The idle and absolute timeouts of one [`SessionClass`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Inactivity after which a session of the class ends.
    pub idle_timeout: Duration,
    /// Lifetime after which a session of the class ends whatever its
    /// activity.
    pub absolute_timeout: Duration,
}

/// The lifetime class of a session, chosen when it is created (or signed
/// in afresh) and stored with it, so the idle timeout applied at every
/// touch and the absolute deadline follow the class.
///
/// `Remember` is the "keep me signed in" choice a sign-in page offers: a
/// longer lifetime the *user* asked for on this device, with its own
/// timeouts (ASVS 5.0 V7.3.1 and V7.3.2 ask that both timeouts be set per
/// the risk the application documents; NIST SP 800-63B section 7.2 bounds
/// reauthentication by the assurance level, so a site at AAL2 must keep
/// the remember lifetime inside its limits). Step-up re-authentication
/// (`authenticated_at`) is unaffected: it stays per session whatever the
/// class.
///
/// ```
/// use tessera::policy::SessionClass;
/// assert_eq!(SessionClass::parse("remember"), Some(SessionClass::Remember));
/// assert_eq!(SessionClass::Default.as_str(), "default");
/// assert_eq!(SessionClass::parse("forever"), None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionClass {
    /// The policy's own `idle_timeout` and `absolute_timeout`.
    #[default]
    Default,
    /// "Keep me signed in": the timeouts of [`SessionPolicy::remember`].
    Remember,
}

impl SessionClass {
    /// The class as stored and shown: `default` or `remember`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Remember => "remember",
        }
    }

    /// The class named `name` (as written by [`SessionClass::as_str`]).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "default" => Some(Self::Default),
            "remember" => Some(Self::Remember),
            _ => None,
        }
    }
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            touch_step: Duration::from_secs(60),
            max_sessions_per_user: None,
            session_limit_action: SessionLimitAction::EvictOldest,
            refresh_grace: DEFAULT_REFRESH_GRACE,
            max_data_bytes: None,
            remember: None,
        }
    }
}

/// What creating a session does when its user already holds
/// [`SessionPolicy::max_sessions_per_user`] live sessions (ASVS 5.0 V7.1.2:
/// the number of concurrent sessions is limited, and what happens at the
/// limit is documented).
///
/// ```
/// use tessera::policy::SessionLimitAction;
///
/// assert_eq!("refuse_new".parse(), Ok(SessionLimitAction::RefuseNew));
/// assert_eq!(SessionLimitAction::EvictOldest.as_str(), "evict_oldest");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionLimitAction {
    /// The new session is created and the user's oldest sessions (by
    /// creation time) end, with the tombstone `revoked` by `session_limit`.
    #[default]
    EvictOldest,
    /// The new session is refused
    /// ([`SessionError::SessionLimit`](crate::error::SessionError::SessionLimit));
    /// the existing ones are untouched.
    RefuseNew,
}

impl SessionLimitAction {
    /// The configuration spelling: `evict_oldest` or `refuse_new`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EvictOldest => "evict_oldest",
            Self::RefuseNew => "refuse_new",
        }
    }
}

impl std::str::FromStr for SessionLimitAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "evict_oldest" => Ok(Self::EvictOldest),
            "refuse_new" => Ok(Self::RefuseNew),
            other => Err(format!(
                "unknown session_limit_action {other:?} (expected evict_oldest or refuse_new)"
            )),
        }
    }
}

/// The per-user session cap a store enforces in
/// [`Store::create_capped`](crate::store::Store::create_capped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCap {
    /// Most live sessions one user may hold (at least one).
    pub max: usize,
    /// What to do when the new session would exceed `max`.
    pub action: SessionLimitAction,
}

impl SessionCap {
    /// For a user holding `live` sessions, how many of the oldest a new
    /// session evicts, or `None` if it is refused.
    ///
    /// ```
    /// use tessera::policy::{SessionCap, SessionLimitAction};
    ///
    /// let evict = SessionCap { max: 3, action: SessionLimitAction::EvictOldest };
    /// assert_eq!(evict.excess(2), Some(0));
    /// assert_eq!(evict.excess(3), Some(1));
    /// let refuse = SessionCap { max: 3, action: SessionLimitAction::RefuseNew };
    /// assert_eq!(refuse.excess(2), Some(0));
    /// assert_eq!(refuse.excess(3), None);
    /// ```
    pub fn excess(self, live: usize) -> Option<usize> {
        let max = self.max.max(1);
        if live < max {
            return Some(0);
        }
        match self.action {
            SessionLimitAction::EvictOldest => Some(live + 1 - max),
            SessionLimitAction::RefuseNew => None,
        }
    }
}

/// A policy that cannot be enforced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A timeout of zero would end every session at once.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// The touch step must be shorter than the idle timeout (of every
    /// class), or the idle deadline could pass between two writes.
    #[error("touch_step must be shorter than idle_timeout")]
    TouchStepTooLong,
}

impl SessionPolicy {
    /// Sets the idle timeout.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the absolute timeout.
    pub fn with_absolute_timeout(mut self, timeout: Duration) -> Self {
        self.absolute_timeout = timeout;
        self
    }

    /// Sets the touch step.
    pub fn with_touch_step(mut self, step: Duration) -> Self {
        self.touch_step = step;
        self
    }

    /// Limits the number of concurrent sessions per user.
    pub fn with_max_sessions_per_user(mut self, max: Option<usize>) -> Self {
        self.max_sessions_per_user = max;
        self
    }

    /// Sets what happens when a user reaches `max_sessions_per_user`.
    ///
    /// ```
    /// use tessera::policy::{SessionLimitAction, SessionPolicy};
    ///
    /// let policy = SessionPolicy::default()
    ///     .with_max_sessions_per_user(Some(3))
    ///     .with_session_limit_action(SessionLimitAction::RefuseNew);
    /// assert_eq!(policy.session_cap().map(|c| c.max), Some(3));
    /// ```
    pub fn with_session_limit_action(mut self, action: SessionLimitAction) -> Self {
        self.session_limit_action = action;
        self
    }

    /// The cap a store enforces when it creates a session for a user, or
    /// `None` without a limit. A limit of zero counts as one.
    pub fn session_cap(&self) -> Option<SessionCap> {
        self.max_sessions_per_user.map(|max| SessionCap {
            max: max.max(1),
            action: self.session_limit_action,
        })
    }

    /// Sets the refresh-token grace period.
    pub fn with_refresh_grace(mut self, grace: Duration) -> Self {
        self.refresh_grace = grace;
        self
    }

    /// Limits the size of session data (see
    /// [`SessionPolicy::max_data_bytes`]).
    ///
    /// ```
    /// let policy = tessera::SessionPolicy::default().with_max_data_bytes(Some(16 * 1024));
    /// assert_eq!(policy.max_data_bytes, Some(16 * 1024));
    /// ```
    pub fn with_max_data_bytes(mut self, max: Option<usize>) -> Self {
        self.max_data_bytes = max;
        self
    }

    /// Turns the [`SessionClass::Remember`] class on, with its own idle and
    /// absolute timeouts.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tessera::policy::{SessionClass, SessionPolicy};
    /// use tessera::time::Timestamp;
    ///
    /// let day = Duration::from_secs(24 * 3600);
    /// let policy = SessionPolicy::default().with_remember(7 * day, 30 * day);
    /// assert!(policy.validate().is_ok());
    /// let d = policy.deadlines_for(SessionClass::Remember, Timestamp::from_millis(0));
    /// assert_eq!(d.absolute.as_millis(), 30 * 24 * 3600 * 1000);
    /// ```
    pub fn with_remember(mut self, idle_timeout: Duration, absolute_timeout: Duration) -> Self {
        self.remember = Some(Lifetime {
            idle_timeout,
            absolute_timeout,
        });
        self
    }

    /// Whether sessions of `class` may be created under this policy.
    pub fn offers(&self, class: SessionClass) -> bool {
        match class {
            SessionClass::Default => true,
            SessionClass::Remember => self.remember.is_some(),
        }
    }

    /// The timeouts of `class`. A class the policy does not offer gets the
    /// default timeouts: a `remember` session stored while the class was
    /// configured is held to the default idle timeout once it is not.
    pub fn lifetime(&self, class: SessionClass) -> Lifetime {
        match (class, self.remember) {
            (SessionClass::Remember, Some(remember)) => remember,
            _ => Lifetime {
                idle_timeout: self.idle_timeout,
                absolute_timeout: self.absolute_timeout,
            },
        }
    }

    /// Whether `data` fits [`SessionPolicy::max_data_bytes`].
    ///
    /// Takes any JSON object, the type behind [`crate::record::Data`]: the
    /// policy only measures its encoding.
    pub fn data_fits(&self, data: &serde_json::Map<String, serde_json::Value>) -> bool {
        self.max_data_bytes
            .is_none_or(|max| serde_json::to_vec(data).is_ok_and(|encoded| encoded.len() <= max))
    }

    /// Checks that the policy can be enforced.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] for zero timeouts or a touch step at least as long as
    /// the idle timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tessera::policy::SessionPolicy;
    /// let bad = SessionPolicy::default().with_idle_timeout(Duration::ZERO);
    /// assert!(bad.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.idle_timeout.is_zero() {
            return Err(PolicyError::Zero("idle_timeout"));
        }
        if self.absolute_timeout.is_zero() {
            return Err(PolicyError::Zero("absolute_timeout"));
        }
        if self.touch_step >= self.idle_timeout {
            return Err(PolicyError::TouchStepTooLong);
        }
        if let Some(remember) = self.remember {
            if remember.idle_timeout.is_zero() {
                return Err(PolicyError::Zero("remember idle_timeout"));
            }
            if remember.absolute_timeout.is_zero() {
                return Err(PolicyError::Zero("remember absolute_timeout"));
            }
            if self.touch_step >= remember.idle_timeout {
                return Err(PolicyError::TouchStepTooLong);
            }
        }
        Ok(())
    }

    /// Deadlines of a session created (or signed in afresh) at `now`.
    ///
    /// ```
    /// use tessera::policy::SessionPolicy;
    /// use tessera::time::Timestamp;
    /// let d = SessionPolicy::default().deadlines_at(Timestamp::from_millis(0));
    /// assert_eq!(d.idle.as_millis(), 30 * 60 * 1000);
    /// assert_eq!(d.absolute.as_millis(), 12 * 3600 * 1000);
    /// ```
    pub fn deadlines_at(&self, now: Timestamp) -> Deadlines {
        self.deadlines_for(SessionClass::Default, now)
    }

    /// Deadlines of a session of `class` created (or signed in afresh) at
    /// `now`.
    pub fn deadlines_for(&self, class: SessionClass, now: Timestamp) -> Deadlines {
        let lifetime = self.lifetime(class);
        let absolute = now + lifetime.absolute_timeout;
        Deadlines {
            idle: (now + lifetime.idle_timeout).min(absolute),
            absolute,
        }
    }

    /// The idle deadline that activity at `now` earns a default-class
    /// session, never past `absolute`.
    pub fn idle_deadline_after_activity(&self, now: Timestamp, absolute: Timestamp) -> Timestamp {
        self.idle_deadline_for(SessionClass::Default, now, absolute)
    }

    /// The idle deadline that activity at `now` earns a session of `class`,
    /// never past `absolute`.
    pub fn idle_deadline_for(
        &self,
        class: SessionClass,
        now: Timestamp,
        absolute: Timestamp,
    ) -> Timestamp {
        (now + self.lifetime(class).idle_timeout).min(absolute)
    }

    /// Whether activity at `now` must be written back: true when the idle
    /// deadline would move forward by more than the touch step.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tessera::policy::SessionPolicy;
    /// use tessera::time::Timestamp;
    ///
    /// let policy = SessionPolicy::default();
    /// let d = policy.deadlines_at(Timestamp::from_millis(0));
    /// assert!(!policy.needs_touch(&d, Timestamp::from_millis(0) + Duration::from_secs(30)));
    /// assert!(policy.needs_touch(&d, Timestamp::from_millis(0) + Duration::from_secs(61)));
    /// ```
    pub fn needs_touch(&self, deadlines: &Deadlines, now: Timestamp) -> bool {
        self.needs_touch_for(SessionClass::Default, deadlines, now)
    }

    /// [`SessionPolicy::needs_touch`] for a session of `class`.
    pub fn needs_touch_for(
        &self,
        class: SessionClass,
        deadlines: &Deadlines,
        now: Timestamp,
    ) -> bool {
        let wanted = self.idle_deadline_for(class, now, deadlines.absolute);
        wanted > deadlines.idle + self.touch_step
    }
}

/// The two deadlines of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// End of the session unless there is activity first.
    pub idle: Timestamp,
    /// End of the session whatever happens.
    pub absolute: Timestamp,
}

impl Deadlines {
    /// Why the session is over at `now`, if it is. A session is valid at
    /// `now` only while `now` is strictly before both deadlines. When both
    /// have passed, the absolute deadline is reported: it is the one no
    /// activity could have avoided.
    ///
    /// ```
    /// use tessera::policy::{Deadlines, ExpiryReason};
    /// use tessera::time::Timestamp;
    /// let d = Deadlines { idle: Timestamp::from_millis(10), absolute: Timestamp::from_millis(20) };
    /// assert_eq!(d.expired_at(Timestamp::from_millis(9)), None);
    /// assert_eq!(d.expired_at(Timestamp::from_millis(10)), Some(ExpiryReason::Idle));
    /// assert_eq!(d.expired_at(Timestamp::from_millis(20)), Some(ExpiryReason::Absolute));
    /// ```
    pub fn expired_at(&self, now: Timestamp) -> Option<ExpiryReason> {
        if now >= self.absolute {
            Some(ExpiryReason::Absolute)
        } else if now >= self.idle {
            Some(ExpiryReason::Idle)
        } else {
            None
        }
    }

    /// The earlier of the two deadlines: when the session ends without activity.
    pub fn next(&self) -> Timestamp {
        self.idle.min(self.absolute)
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExpiryReason {
    /// No activity within the idle timeout.
    Idle,
    /// The absolute lifetime ran out.
    Absolute,
}

impl ExpiryReason {
    /// The reason as used in JSON and audit events: `expired_idle` or
    /// `expired_absolute`.
    ///
    /// ```
    /// assert_eq!(tessera::policy::ExpiryReason::Idle.as_code(), "expired_idle");
    /// ```
    pub const fn as_code(self) -> &'static str {
        match self {
            Self::Idle => "expired_idle",
            Self::Absolute => "expired_absolute",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_deadline_never_passes_absolute() {
        let policy = SessionPolicy::default()
            .with_idle_timeout(Duration::from_secs(100))
            .with_absolute_timeout(Duration::from_secs(150))
            .with_touch_step(Duration::from_secs(1));
        let d = policy.deadlines_at(Timestamp::from_millis(0));
        let later = Timestamp::from_millis(120_000);
        assert_eq!(
            policy.idle_deadline_after_activity(later, d.absolute),
            d.absolute
        );
    }

    #[test]
    fn touch_step_longer_than_idle_is_refused() {
        let policy = SessionPolicy::default().with_touch_step(Duration::from_secs(3600));
        assert_eq!(policy.validate(), Err(PolicyError::TouchStepTooLong));
    }
}
