//! Bodies of the `/v1/requests/…` routes (also the OpenAPI schemas). The
//! wire contract, with examples, is `clients/PROTOCOL.md`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::types::{BodyToken, SessionView};

/// `POST /v1/requests/check`: what a client middleware saw of one incoming
/// request. Header values are passed as received; a header the request did
/// not carry is left out (or `null`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The request method, as sent (`GET`, `POST`, …).
    pub method: String,
    /// The request's `Cookie` header (several headers joined with `; `).
    /// tessera finds its session cookie in it with the same duplicate rule
    /// as its own routes; a client may leave out cookies that are not the
    /// session cookie.
    pub cookie: Option<String>,
    /// The request's `Authorization` header, only if the application
    /// accepts `Bearer tss_…` session tokens (API clients). A bearer token
    /// wins over the cookie and is exempt from the CSRF check.
    pub authorization: Option<String>,
    /// The `Origin` header.
    pub origin: Option<String>,
    /// The `Sec-Fetch-Site` header.
    pub sec_fetch_site: Option<String>,
    /// The `Host` header (HTTP/2 `:authority`) the browser addressed.
    pub host: Option<String>,
    /// The CSRF token the request carried (`X-CSRF-Token` header or the
    /// `csrf_token` form field).
    pub csrf_token: Option<String>,
    /// Count the request as user activity (moves the idle deadline per the
    /// touch policy). Default true; false for status polls.
    #[serde(default = "yes")]
    pub touch: bool,
    /// A change of the session data to make in the same call, once the
    /// guard has passed and only on a live session: nothing is written for
    /// a refused request or without a session. See [`CheckPatch`].
    pub patch: Option<CheckPatch>,
}

/// A data change carried by a check, applied atomically after the guard
/// passed: one compare-and-set of the session record (the same one
/// `PATCH /v1/sessions/data` makes). A write counts as activity.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckPatch {
    /// Keys to set, merged key by key onto the latest stored data.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub set: Map<String, Value>,
    /// Keys to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Compare-and-set: apply `set` and `remove` only if each of these keys
    /// currently holds exactly this value (`null`: the key is absent).
    /// Otherwise nothing is written and the answer says `conflict`, with the
    /// session as stored now, to retry from.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub expect: Map<String, Value>,
}

/// What became of a check's [`CheckPatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PatchOutcome {
    /// Written; `session` is the record as written.
    Applied,
    /// An `expect`ed value did not hold: nothing was written; `session`
    /// holds the current data.
    Conflict,
}

fn yes() -> bool {
    true
}

/// What the client must do with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A live session: serve the request with it.
    Session,
    /// No live session: serve the request as anonymous (`reason` says why;
    /// routes that need a user answer 401 with it).
    NoSession,
    /// Refused by the CSRF / origin guard: answer `status` (403) with
    /// `reason`, without running the application's handler.
    Refused,
    /// Only in a `check-batch` answer: this request carried something
    /// tessera will not decide on (`reason`: `invalid_method`,
    /// `invalid_header`); answer `status` (400) without running the handler.
    BadRequest,
}

/// `POST /v1/requests/check-batch`: several checks in one call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBatch {
    /// The checks, each as for `POST /v1/requests/check` (1 to 256).
    pub requests: Vec<CheckRequest>,
}

/// The answer of `POST /v1/requests/check-batch`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckBatchResponse {
    /// One answer per request, in the order of the requests.
    pub results: Vec<CheckResponse>,
}

/// The answer of `POST /v1/requests/check`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResponse {
    /// What to do.
    pub outcome: Outcome,
    /// For `no_session`: `missing`, `expired_idle`, `expired_absolute`, or
    /// another code added later (an open set: treat unknown codes like
    /// `missing`). For `refused`: `cross_site`, `untrusted_same_site`,
    /// `foreign_origin`, `csrf_token_missing` or `csrf_token_invalid`.
    pub reason: Option<String>,
    /// For `refused`: the HTTP status to answer with (403).
    pub status: Option<u16>,
    /// For `session`: the token the request presented (as tessera resolved
    /// it from the cookie or bearer header), for this request's follow-up
    /// calls (`PATCH /v1/sessions/data`, rotate, sign-out). Never log it.
    pub token: Option<String>,
    /// For `session`: the session, after this request's activity.
    pub session: Option<SessionView>,
    /// `Set-Cookie` header values to add to the response, as they are
    /// (here: clearing a dead session cookie). Empty for bearer requests.
    pub set_cookie: Vec<String>,
    /// For a check that carried a `patch`, with outcome `session`: whether
    /// it was written. Absent otherwise (without a live session nothing is
    /// written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<PatchOutcome>,
    /// For a check with `touch: false`, with outcome `session`: whether
    /// counting this request as activity would write the store now (the
    /// idle deadline is due to move by more than the touch step). A client
    /// that defers the touch until the application's status is known sends
    /// it (a check with `touch: true`) only when this is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub touch_due: Option<bool>,
}

impl CheckResponse {
    /// An answer with every optional field empty, to fill in.
    pub(crate) fn empty() -> Self {
        Self {
            outcome: Outcome::NoSession,
            reason: None,
            status: None,
            token: None,
            session: None,
            set_cookie: Vec::new(),
            patch: None,
            touch_due: None,
        }
    }
}

/// `POST /v1/requests/login`: the user proved who they are; sign them in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The token the request presented (from its check), if any: it stops
    /// working, whatever happens (no fixation).
    #[schema(value_type = Option<String>)]
    pub token: Option<BodyToken>,
    /// The user now signed in (1–256 bytes, no control characters).
    pub user_id: String,
    /// Client IP, for the device list: an IPv4 or IPv6 address (text that
    /// is not one is not kept).
    pub ip: Option<String>,
    /// Client user agent, for the device list.
    pub user_agent: Option<String>,
    /// "Keep me signed in": the new session gets the remember lifetime
    /// class, and the cookie's `Max-Age` its absolute lifetime. Refused
    /// with 400 `remember_not_configured` (the presented session is left
    /// as it was) when the server does not offer it.
    #[serde(default)]
    pub remember: bool,
    /// RFC 3339: when your app began checking the credential, read before
    /// the stored password hash was; as in `POST /v1/sessions`
    /// ([`crate::api::types::checked_at`]).
    pub checked_at: Option<String>,
}

/// `POST /v1/requests/rotate` and `POST /v1/requests/logout`: the session
/// presented by the request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresentedToken {
    /// The token the request presented (from its check).
    #[schema(value_type = Option<String>)]
    pub token: Option<BodyToken>,
}

/// A newly issued token, for the client to install with `set_cookie`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Installed {
    /// The new token (`tss_…`), for the rest of this request's calls. It
    /// also travels in `set_cookie`; never log it.
    pub token: String,
    /// The session behind it.
    pub session: SessionView,
    /// `Set-Cookie` header values to add to the response (the new cookie,
    /// `Max-Age` = remaining absolute lifetime).
    pub set_cookie: Vec<String>,
}

/// The answer of `POST /v1/requests/logout`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedOut {
    /// Whether a live session was ended.
    pub ended: bool,
    /// `Set-Cookie` header values that delete the cookie.
    pub set_cookie: Vec<String>,
}
