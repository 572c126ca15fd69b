//! # tessera-axum
//!
//! Secure sessions for [axum] 0.8 and tower 0.5: one [`SessionLayer`], a few
//! extractors, and the CSRF guard. The rules (tokens, timeouts, rotation,
//! cookie attributes, CSRF tokens) live in the [`tessera`] core; this crate
//! only wires them to HTTP.
//!
//! ## Usage
//!
//! ```
//! use axum::{Router, body::Body, routing::{get, post}};
//! use http::{Request, StatusCode};
//! use tessera::{SessionManager, store::MemoryStore};
//! use tessera_axum::{AuthUser, CsrfToken, Session, SessionLayer, SessionRejection};
//! use tower::ServiceExt as _;
//!
//! async fn sign_in(session: Session) -> Result<&'static str, SessionRejection> {
//!     // … after checking the password:
//!     session.login("alice").await?; // new token; any presented one dies
//!     Ok("welcome")
//! }
//!
//! async fn home(user: AuthUser, CsrfToken(csrf): CsrfToken) -> String {
//!     // Put `csrf` in forms as `csrf_token`, or send it as `X-CSRF-Token`.
//!     format!("hello {}", user.user_id)
//! }
//!
//! async fn sign_out(session: Session) -> Result<&'static str, SessionRejection> {
//!     session.logout().await?; // record deleted, cookie cleared
//!     Ok("bye")
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = SessionManager::builder(MemoryStore::new()).build()?;
//! let app: Router = Router::new()
//!     .route("/login", post(sign_in))
//!     .route("/", get(home))
//!     .route("/logout", post(sign_out))
//!     .layer(SessionLayer::new(manager));
//!
//! // Sign in: the response installs the session cookie.
//! let login = Request::post("/login").header("sec-fetch-site", "same-origin").body(Body::empty())?;
//! let response = app.clone().oneshot(login).await?;
//! let set_cookie = response.headers()["set-cookie"].to_str()?;
//! assert!(set_cookie.starts_with("__Host-session=tss_"));
//! assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
//!
//! // The next request presents it.
//! let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
//! let home = Request::get("/").header("cookie", &cookie).body(Body::empty())?;
//! assert_eq!(app.clone().oneshot(home).await?.status(), StatusCode::OK);
//!
//! // Without a session: 401 with the reason.
//! let anonymous = Request::get("/").body(Body::empty())?;
//! assert_eq!(app.clone().oneshot(anonymous).await?.status(), StatusCode::UNAUTHORIZED);
//!
//! // An unsafe request without the CSRF token is refused before the handler.
//! let forged = Request::post("/logout").header("cookie", &cookie).body(Body::empty())?;
//! assert_eq!(app.oneshot(forged).await?.status(), StatusCode::FORBIDDEN);
//! # Ok(()) }
//! ```
//!
//! `examples/signin.rs` is a complete application (`cargo run -p
//! tessera-axum --example signin`).
//!
//! ## What the layer does per request
//!
//! - **Finds the credential without a store call**: the session cookie (or
//!   `Authorization: Bearer tss_…` where [accepted](SessionConfig::accept_bearer)).
//!   Malformed, oversized or empty values are refused by parsing alone;
//!   two *different* session cookies mean no session (see
//!   [`tessera::cookie`] for why).
//! - **Loads lazily**: a handler that never reads the session costs no store
//!   call; a read-only request writes nothing until the idle deadline must
//!   move by more than the touch step.
//! - **Guards unsafe methods** against CSRF: Fetch Metadata and `Origin`
//!   checks on every POST/PUT/PATCH/DELETE (which also stops login CSRF),
//!   and a session-bound, masked token for cookie-authenticated requests
//!   ([`guard`]). Bearer requests are exempt: browsers never attach them on
//!   their own.
//! - **Writes the cookie back** after the handler: `__Host-session`, Secure,
//!   HttpOnly, SameSite=Strict, Path=/, `Max-Age` = remaining absolute
//!   lifetime, with `Cache-Control: no-store`; sign-out clears it with the
//!   same attributes and `Clear-Site-Data: "cookies"`.
//! - **Fails closed**: a store error anywhere becomes 503, never an
//!   anonymous or authenticated pass-through ([`SessionRejection`]).
//!
//! ## Extractors
//!
//! | extractor       | gives                                  | rejects with |
//! |-----------------|----------------------------------------|--------------|
//! | [`Session`]     | the lazily loaded session              | 500 if the layer is missing |
//! | [`AuthUser`]    | the signed-in user id                  | 401 `expired_idle` / `expired_absolute` / `missing` |
//! | [`CsrfToken`]   | a masked CSRF token for this render    | 401 without a session |
//! | [`StatusQuery`] | the session, marked as a status query (no activity) | 500 if the layer is missing |
//! | [`DeviceTier`]  | the request's DBSC tier (`bound` / `unbound`) | 401 without a session |
//! | [`BoundSession`] | a signed-in user whose request proved its device (DBSC) | 401 `device_unbound` |
//!
//! `Option<AuthUser>` and `Option<CsrfToken>` give `None` instead of 401
//! (but still 503 on store failure).
//!
//! ## Expiry and status queries
//!
//! When a presented session has expired, [`AuthUser`] rejects with the
//! reason and [`tessera::Session::end_reason`] tells the handler, so a page
//! can say "signed out after inactivity". A route that only reports the
//! session's deadlines (a page polling its own expiry to warn the user)
//! takes the [`StatusQuery`] extractor instead of [`Session`]: it then does
//! not count as activity and cannot keep the session alive.
//!
//! ## Concurrency
//!
//! [`tessera::Session::insert`] buffers changes and merges them key by key
//! at commit, so concurrent requests that change different keys lose
//! nothing. For read-modify-write of one key (a counter, a cart) use
//! [`tessera::Session::update`], which is atomic in every store.
//!
//! ## Device-bound sessions (W3C DBSC)
//!
//! With [`SessionConfig::with_dbsc`] and [`dbsc::routes`] mounted inside the
//! layer, sessions signed in through the layer are offered binding to a key
//! the browser keeps in hardware, and a stolen cookie stops working when its
//! short-lived bound cookie expires ([`dbsc`]; docs/dbsc.md).
//!
//! ## Bearer sessions
//!
//! With [`SessionConfig::accept_bearer`], API clients may present the token
//! as `Authorization: Bearer tss_…`. Such requests skip the CSRF guard and
//! never get `Set-Cookie`; apply a bearer-accepting layer only to the route
//! group that serves API clients. Bearer values without the `tss_` prefix
//! (a JWT for another layer) are ignored here.

#![forbid(unsafe_code)]
// Library and server code never panics on input or store errors: no
// unwrap()/expect() outside tests (the conformance kit allows them).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod credential;
pub mod dbsc;
mod extract;
pub mod guard;
mod layer;
mod rejection;

pub use crate::config::{DEFAULT_CSRF_FORM_LIMIT, SessionConfig};
pub use crate::credential::{find_bearer, find_credential};
pub use crate::dbsc::{BoundSession, DeviceTier};
pub use crate::extract::{AuthUser, CsrfToken, Session, StatusQuery};
pub use crate::layer::{ClientIp, ResponseFuture, SessionLayer, SessionService};
pub use crate::rejection::{SessionRejection, wants_json};
/// The core, re-exported so `tessera-axum` is the only dependency an axum
/// application needs (`tessera_axum::tessera::dbsc`, `…::policy`, …).
pub use tessera;
/// What every application builds: the manager, its policy, the
/// development store.
pub use tessera::{SessionManager, SessionPolicy, store::MemoryStore};

/// The repository README's library quick start, compiled and run as a doc
/// test so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct RootReadmeQuickStart;
