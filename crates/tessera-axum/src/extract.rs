//! Extractors: [`Session`], [`AuthUser`] and [`CsrfToken`].
//!
//! All of them need the [`SessionLayer`](crate::SessionLayer) on the route;
//! without it they answer 500 with reason `session_layer_missing` (a wiring
//! bug, logged, never a silent "not signed in").
//!
//! `Option<AuthUser>` and `Option<CsrfToken>` work too: `None` without a
//! signed-in session, but a store failure is still a 503.

use std::ops::Deref;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use crate::rejection::SessionRejection;
use tessera::session::EndReason;

/// The session of this request (a [`tessera::Session`]; it derefs to it).
///
/// Nothing is loaded until a method needs the record, so a handler that
/// takes `Session` but never reads it costs no store call.
///
/// ```
/// use tessera_axum::{Session, SessionRejection};
///
/// async fn theme(session: Session) -> Result<String, SessionRejection> {
///     Ok(session.get::<String>("theme").await?.unwrap_or_else(|| "light".into()))
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::get(theme);
/// ```
#[derive(Debug, Clone)]
pub struct Session(pub tessera::Session);

impl Session {
    /// The core session.
    pub fn into_inner(self) -> tessera::Session {
        self.0
    }
}

impl Deref for Session {
    type Target = tessera::Session;

    fn deref(&self) -> &tessera::Session {
        &self.0
    }
}

pub(crate) fn session_of(parts: &Parts) -> Result<tessera::Session, SessionRejection> {
    parts
        .extensions
        .get::<tessera::Session>()
        .cloned()
        .ok_or_else(|| {
            tracing::error!("a session extractor is used on a route without SessionLayer");
            SessionRejection::Internal {
                reason: "session_layer_missing",
            }
        })
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        session_of(parts).map(Session)
    }
}

/// The signed-in user. Rejects with 401 and a `reason` of `expired_idle`,
/// `expired_absolute` or `missing` when there is none, so the client can
/// say "you were signed out after 30 minutes of inactivity".
///
/// ```
/// use tessera_axum::AuthUser;
///
/// async fn me(user: AuthUser) -> String {
///     format!("signed in as {}", user.user_id)
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::get(me);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthUser {
    /// The user id.
    pub user_id: String,
    /// The session it came from.
    pub session: Session,
}

async fn auth_user(parts: &Parts) -> Result<Result<AuthUser, EndReason>, SessionRejection> {
    let session = session_of(parts)?;
    match session.user_id().await? {
        Some(user_id) => Ok(Ok(AuthUser {
            user_id,
            session: Session(session),
        })),
        None => {
            let reason = session.end_reason().await?.unwrap_or(EndReason::Unknown);
            Ok(Err(reason))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        auth_user(parts)
            .await?
            .map_err(|reason| SessionRejection::Unauthenticated { reason })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthUser {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(auth_user(parts).await?.ok())
    }
}

/// A masked CSRF token of this session, fresh for this render (so it never
/// repeats in a compressed response: BREACH). Put it in forms as the
/// `csrf_token` field or send it as the `X-CSRF-Token` header. Needs a
/// session (401 otherwise); `Option<CsrfToken>` for pages without one.
///
/// ```
/// use tessera_axum::CsrfToken;
///
/// async fn form(CsrfToken(token): CsrfToken) -> String {
///     format!(r#"<form method="post"><input type="hidden" name="csrf_token" value="{token}"></form>"#)
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::get(form);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrfToken(pub String);

async fn csrf_token(parts: &Parts) -> Result<Result<CsrfToken, EndReason>, SessionRejection> {
    let session = session_of(parts)?;
    match session.csrf_token().await? {
        Some(token) => Ok(Ok(CsrfToken(token))),
        None => {
            let reason = session.end_reason().await?.unwrap_or(EndReason::Unknown);
            Ok(Err(reason))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        csrf_token(parts)
            .await?
            .map_err(|reason| SessionRejection::Unauthenticated { reason })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for CsrfToken {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(csrf_token(parts).await?.ok())
    }
}

/// The session of a **status query**: a request that only reports on the
/// session (a page polling its own expiry to warn the user) and so must
/// not count as activity, or it would keep the session alive forever
/// (OWASP Session Management Cheat Sheet, idle timeout). Taking this
/// extractor marks the request before the handler runs, so no order of
/// calls inside the handler can turn it into activity.
///
/// ```
/// use tessera_axum::{SessionRejection, StatusQuery};
///
/// async fn expiry(StatusQuery(session): StatusQuery) -> Result<String, SessionRejection> {
///     let record = session.record().await?.ok_or(SessionRejection::MISSING)?;
///     Ok(record.deadlines.idle.as_millis().to_string())
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::get(expiry);
/// ```
#[derive(Debug, Clone)]
pub struct StatusQuery(pub tessera::Session);

impl<S: Send + Sync> FromRequestParts<S> for StatusQuery {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let session = session_of(parts)?;
        session.mark_status_query();
        Ok(Self(session))
    }
}
