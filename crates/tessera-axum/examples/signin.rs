//! A complete sign-in flow on tessera-axum: sign in, see the session, rotate
//! its token, sign out.
//!
//! ```text
//! cargo run -p tessera-axum --example signin                     # memory store
//! cargo run -p tessera-axum --example signin -- --sqlite demo.db # SQLite file
//! ```
//!
//! Then open <http://127.0.0.1:3000> and sign in as `alice` / `wonderland`.
//!
//! The example listens on plain HTTP, so it runs the cookie in development
//! mode (no `Secure`, no `__Host-` prefix; the layer logs a warning). Pass
//! `--secure` to keep the production defaults: browsers accept `Secure`
//! cookies from `http://localhost`, not from other plain-HTTP hosts.

#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Form;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tessera::SessionManager;
use tessera::cookie::CookieConfig;
use tessera::store::{MemoryStore, Store};
use tessera_axum::{AuthUser, CsrfToken, Session, SessionConfig, SessionLayer, SessionRejection};

/// The demo's only account. A real application verifies an Argon2id hash.
const USER: &str = "alice";
const PASSWORD: &str = "wonderland";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tessera::audit=info".into()),
        )
        .init();

    let args: Vec<String> = std::env::args().skip(1).collect();
    let secure = args.iter().any(|a| a == "--secure");
    let sqlite = args
        .iter()
        .position(|a| a == "--sqlite")
        .and_then(|i| args.get(i + 1).cloned());
    let addr: SocketAddr = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || Ok(SocketAddr::from(([127, 0, 0, 1], 3000))),
            |a| a.parse(),
        )?;

    let store: Arc<dyn Store> = match sqlite {
        Some(path) => Arc::new(tessera_sql::SqlStore::connect(&format!("sqlite://{path}")).await?),
        None => Arc::new(MemoryStore::new()),
    };
    let manager = SessionManager::builder_from_arc(store).build()?;
    let config =
        SessionConfig::default().with_cookie(CookieConfig::default().insecure_http(!secure));

    let app = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/rotate", post(rotate))
        .route("/logout", post(logout))
        .route("/status", get(status))
        .layer(SessionLayer::with_config(manager, config));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// The home page: the session's details for a signed-in user, the sign-in
/// form otherwise (with the reason the last session ended, if any).
async fn home(
    session: Session,
    user: Option<AuthUser>,
    csrf: Option<CsrfToken>,
) -> Result<Html<String>, SessionRejection> {
    let csrf_field = csrf
        .map(|CsrfToken(t)| {
            format!(
                r#"<input type="hidden" name="csrf_token" value="{}">"#,
                escape(&t)
            )
        })
        .unwrap_or_default();
    let Some(user) = user else {
        let notice = match session.end_reason().await? {
            Some(reason) => format!(
                "<p>Your session ended ({}). Please sign in again.</p>",
                reason.as_code()
            ),
            None => String::new(),
        };
        return Ok(Html(format!(
            r#"<!doctype html><title>Sign in</title><h1>Sign in</h1>{notice}
<form method="post" action="/login">{csrf_field}
<label>User <input name="user" value="alice"></label>
<label>Password <input name="password" type="password"></label>
<button>Sign in</button></form>"#
        )));
    };
    let record = session.record().await?.ok_or(SessionRejection::MISSING)?;
    Ok(Html(format!(
        r#"<!doctype html><title>Session</title><h1>Signed in as {user}</h1>
<dl>
<dt>Session handle (public)</dt><dd>{handle}</dd>
<dt>Created</dt><dd>{created}</dd>
<dt>Idle deadline</dt><dd>{idle}</dd>
<dt>Absolute deadline</dt><dd>{absolute}</dd>
<dt>Client</dt><dd>{ip} · {ua}</dd>
</dl>
<form method="post" action="/rotate">{csrf_field}<button>Rotate the token</button></form>
<form method="post" action="/logout">{csrf_field}<button>Sign out</button></form>
<p><a href="/status">Expiry status (JSON, does not count as activity)</a></p>"#,
        user = escape(&user.user_id),
        handle = escape(record.handle.as_str()),
        created = record.created_at,
        idle = record.deadlines.idle,
        absolute = record.deadlines.absolute,
        // An address's text needs no escaping.
        ip = record
            .client
            .ip
            .map_or_else(|| "?".to_owned(), |ip| ip.to_string()),
        ua = escape(record.client.user_agent.as_deref().unwrap_or("?")),
    )))
}

#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
}

/// Signs in. The CSRF guard has already refused cross-site posts of this
/// form (login CSRF); `login` issues a new token, killing any old one.
async fn login(session: Session, Form(form): Form<Login>) -> Result<Response, SessionRejection> {
    if form.user != USER || form.password != PASSWORD {
        return Ok((
            axum::http::StatusCode::UNAUTHORIZED,
            Html("Wrong user or password. <a href=\"/\">Back</a>"),
        )
            .into_response());
    }
    session.login(&form.user).await?;
    Ok(Redirect::to("/").into_response())
}

/// A new token for the same session, as after a privilege change.
async fn rotate(user: AuthUser) -> Result<Redirect, SessionRejection> {
    user.session.rotate().await?;
    Ok(Redirect::to("/"))
}

/// Signs out: the record is deleted, the cookie cleared.
async fn logout(session: Session) -> Result<Redirect, SessionRejection> {
    session.logout().await?;
    Ok(Redirect::to("/"))
}

/// Deadlines for an expiry warning; polling it does not keep the session
/// alive.
async fn status(session: Session) -> Result<Json<serde_json::Value>, SessionRejection> {
    session.mark_status_query();
    let record = session.record().await?;
    Ok(Json(match record {
        Some(r) => serde_json::json!({
            "signed_in": r.user_id.is_some(),
            "idle_expires_at": r.deadlines.idle.to_rfc3339(),
            "absolute_expires_at": r.deadlines.absolute.to_rfc3339(),
        }),
        None => serde_json::json!({
            "signed_in": false,
            "reason": session.end_reason().await?.map(|r| r.as_code()),
        }),
    }))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
