//! Each user's recent security events, kept in the server database for the
//! account's "Security activity" page: sign-ins (device and IP), sign-outs,
//! devices signed out and by whom (this account from one of its devices, or
//! an administrator), password changes.
//!
//! Bounded and expiring: each user keeps at most [`KEEP_PER_USER`] events,
//! and events older than [`RETENTION`] are deleted, both whenever an event
//! is recorded. Like the audit log, an event holds no token, password or
//! CSRF token (OWASP Logging Cheat Sheet); it holds the client's IP and
//! `User-Agent`, which the device list shows anyway.
//!
//! Recording is best effort: a failed write is logged and the action it
//! describes goes on (the audit log on standard error keeps the event).

use std::time::Duration;

use crate::db::{Db, on_pool};

/// Events kept per user (the newest).
pub const KEEP_PER_USER: i64 = 50;

/// How long an event is kept.
pub const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// The longest `User-Agent` and detail stored (bytes, cut at a character
/// boundary).
const MAX_TEXT: usize = 256;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A sign-in (the device and IP are the new session's).
    SignedIn,
    /// A sign-out of the device that asked.
    SignedOut,
    /// One other device signed out by the user (detail: its name).
    DeviceSignedOut,
    /// Every other device signed out by the user (detail: how many).
    OthersSignedOut,
    /// The password changed; every other device signed out.
    PasswordChanged,
    /// Sessions ended by an administrator (CLI or `/v1` API).
    AdminSignedOut,
    /// A used refresh token was presented again: its session was ended
    /// (RFC 9700 §4.14.2).
    RefreshReuseDetected,
}

impl EventKind {
    /// The stored name.
    ///
    /// ```
    /// use tessera_server::activity::EventKind;
    /// assert_eq!(EventKind::parse(EventKind::SignedIn.as_str()), Some(EventKind::SignedIn));
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SignedIn => "signed_in",
            Self::SignedOut => "signed_out",
            Self::DeviceSignedOut => "device_signed_out",
            Self::OthersSignedOut => "others_signed_out",
            Self::PasswordChanged => "password_changed",
            Self::AdminSignedOut => "admin_signed_out",
            Self::RefreshReuseDetected => "refresh_reuse_detected",
        }
    }

    /// The kind of a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::SignedIn,
            Self::SignedOut,
            Self::DeviceSignedOut,
            Self::OthersSignedOut,
            Self::PasswordChanged,
            Self::AdminSignedOut,
            Self::RefreshReuseDetected,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Milliseconds since the epoch (the session clock).
    pub at_ms: i64,
    /// What happened.
    pub kind: EventKind,
    /// The client IP of whoever acted (none for an administrator).
    pub ip: Option<String>,
    /// The `User-Agent` of whoever acted (none for an administrator).
    pub user_agent: Option<String>,
    /// More about it: the device signed out, how many sessions ended.
    pub detail: String,
}

/// What is being recorded.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    /// Whose account.
    pub user: &'a str,
    /// Milliseconds since the epoch (the session clock).
    pub at_ms: i64,
    /// What happened.
    pub kind: EventKind,
    /// The client IP of whoever acted.
    pub ip: Option<&'a str>,
    /// The `User-Agent` of whoever acted.
    pub user_agent: Option<&'a str>,
    /// More about it.
    pub detail: &'a str,
}

/// The security events table of the server database.
#[derive(Debug, Clone)]
pub struct Activity {
    db: Db,
}

fn cut(s: &str) -> &str {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

impl Activity {
    /// The events table of `db` (created by the server's migrations).
    pub fn new(db: impl Into<Db>) -> Self {
        Self { db: db.into() }
    }

    /// Records an event, then deletes the user's events beyond the newest
    /// [`KEEP_PER_USER`] and every event older than [`RETENTION`].
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn record(&self, e: &NewEvent<'_>) -> Result<(), sqlx::Error> {
        let insert = self.db.dialect(
            "INSERT INTO tessera_security_events (username, at, kind, ip, user_agent, detail)
             VALUES (?, ?, ?, ?, ?, ?)",
        );
        on_pool!(&self.db, pool => sqlx::query(&insert)
            .bind(e.user)
            .bind(e.at_ms)
            .bind(e.kind.as_str())
            .bind(e.ip.map(cut))
            .bind(e.user_agent.map(cut))
            .bind(cut(e.detail))
            .execute(pool)
            .await
            .map(drop))?;
        // The id of the oldest event to keep; older ones go. (Two steps:
        // MySQL allows no LIMIT in an IN subquery.)
        let oldest_kept = self.db.dialect(
            "SELECT id FROM tessera_security_events WHERE username = ?
             ORDER BY id DESC LIMIT 1 OFFSET ?",
        );
        let oldest: Option<i64> = on_pool!(&self.db, pool => sqlx::query_scalar(&oldest_kept)
            .bind(e.user)
            .bind(KEEP_PER_USER - 1)
            .fetch_optional(pool)
            .await)?;
        if let Some(id) = oldest {
            let trim = self
                .db
                .dialect("DELETE FROM tessera_security_events WHERE username = ? AND id < ?");
            on_pool!(&self.db, pool => sqlx::query(&trim)
                .bind(e.user)
                .bind(id)
                .execute(pool)
                .await
                .map(drop))?;
        }
        let retention_ms = i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX);
        let expire = self
            .db
            .dialect("DELETE FROM tessera_security_events WHERE at < ?");
        on_pool!(&self.db, pool => sqlx::query(&expire)
            .bind(e.at_ms.saturating_sub(retention_ms))
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Records an event; a failure is logged, never returned (the action it
    /// describes has happened and must not be reported as failed).
    pub async fn record_or_log(&self, e: &NewEvent<'_>) {
        if let Err(err) = self.record(e).await {
            tracing::warn!(error = %err, kind = e.kind.as_str(), "could not record a security event");
        }
    }

    /// Records that an administrator ended `n` of `user`'s sessions (CLI or
    /// `/v1` API; no IP or device: the request is not the user's), best
    /// effort.
    pub async fn admin_signed_out(&self, user: &str, at_ms: i64, n: u64) {
        if n == 0 {
            return;
        }
        self.record_or_log(&NewEvent {
            user,
            at_ms,
            kind: EventKind::AdminSignedOut,
            ip: None,
            user_agent: None,
            detail: &n.to_string(),
        })
        .await;
    }

    /// Records that a used refresh token of `user` was presented again and
    /// its session ended, best effort. No IP or device: the presenter may
    /// be the thief or the victim, and the token endpoint knows neither.
    pub async fn refresh_reuse_detected(&self, user: &str, at_ms: i64) {
        self.record_or_log(&NewEvent {
            user,
            at_ms,
            kind: EventKind::RefreshReuseDetected,
            ip: None,
            user_agent: None,
            detail: "",
        })
        .await;
    }

    /// The user's events, newest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn list(&self, user: &str, limit: i64) -> Result<Vec<Event>, sqlx::Error> {
        let sql = self.db.dialect(
            "SELECT at, kind, ip, user_agent, detail FROM tessera_security_events
             WHERE username = ? ORDER BY id DESC LIMIT ?",
        );
        type Row = (i64, String, Option<String>, Option<String>, String);
        let rows: Vec<Row> = on_pool!(&self.db, pool => sqlx::query_as(&sql)
            .bind(user)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .filter_map(|(at_ms, kind, ip, user_agent, detail)| {
                Some(Event {
                    at_ms,
                    kind: EventKind::parse(&kind)?,
                    ip,
                    user_agent,
                    detail,
                })
            })
            .collect())
    }
}

/// The user of the session with `handle`, read before an administrator
/// revokes it by handle, so the revocation can be recorded for that user.
/// Best effort: `None` when unknown or on a store error.
pub async fn owner_of(
    manager: &tessera::SessionManager,
    handle: &tessera::record::SessionHandle,
) -> Option<String> {
    let store = manager.refresh_backend()?;
    match store.load_session_by_handle(handle).await {
        Ok(record) => record.and_then(|r| r.user_id),
        Err(e) => {
            tracing::warn!(error = %e, "could not read a session's owner");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn activity() -> Activity {
        let db = crate::db::open("memory://", 1, Duration::from_secs(5))
            .await
            .unwrap();
        Activity::new(db)
    }

    fn event(user: &str, at_ms: i64, detail: &str) -> NewEvent<'static> {
        NewEvent {
            user: Box::leak(user.to_owned().into_boxed_str()),
            at_ms,
            kind: EventKind::SignedIn,
            ip: Some("192.0.2.1"),
            user_agent: Some("curl/8.5.0"),
            detail: Box::leak(detail.to_owned().into_boxed_str()),
        }
    }

    #[tokio::test]
    async fn events_are_listed_newest_first_per_user() {
        let a = activity().await;
        a.record(&event("alice", 1_000, "one")).await.unwrap();
        a.record(&event("bob", 2_000, "bob's")).await.unwrap();
        a.record(&event("alice", 3_000, "two")).await.unwrap();
        let list = a.list("alice", 10).await.unwrap();
        let details: Vec<&str> = list.iter().map(|e| e.detail.as_str()).collect();
        assert_eq!(details, ["two", "one"]);
        assert_eq!(list[0].ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(a.list("bob", 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn each_user_keeps_the_newest_events_only() {
        let a = activity().await;
        a.record(&event("bob", 1, "bob's")).await.unwrap();
        for i in 0..KEEP_PER_USER + 7 {
            a.record(&event("alice", 1_000 + i, &i.to_string()))
                .await
                .unwrap();
        }
        let list = a.list("alice", 1_000).await.unwrap();
        assert_eq!(i64::try_from(list.len()).unwrap(), KEEP_PER_USER);
        assert_eq!(list[0].detail, (KEEP_PER_USER + 6).to_string());
        assert_eq!(list.last().unwrap().detail, "7");
        // Another user's events are untouched.
        assert_eq!(a.list("bob", 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn events_past_the_retention_are_deleted() {
        let a = activity().await;
        let retention = i64::try_from(RETENTION.as_millis()).unwrap();
        a.record(&event("bob", 1_000, "old")).await.unwrap();
        a.record(&event("alice", 1_000 + retention, "at the limit"))
            .await
            .unwrap();
        assert_eq!(a.list("bob", 10).await.unwrap().len(), 1);
        a.record(&event("alice", 1_001 + retention, "later"))
            .await
            .unwrap();
        assert!(a.list("bob", 10).await.unwrap().is_empty());
        assert_eq!(a.list("alice", 10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn long_text_is_cut_at_a_character_boundary() {
        let a = activity().await;
        let long = "é".repeat(300);
        let mut e = event("alice", 1, "x");
        e.user_agent = Some(Box::leak(long.into_boxed_str()));
        a.record(&e).await.unwrap();
        let ua = a.list("alice", 1).await.unwrap()[0]
            .user_agent
            .clone()
            .unwrap();
        assert_eq!(ua.len(), MAX_TEXT);
    }
}
