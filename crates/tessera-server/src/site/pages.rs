//! Server-rendered HTML. No inline script or style (the CSP forbids both);
//! behaviour lives in `/static/app.js`. Every interpolated value is
//! HTML-escaped.

use std::fmt::Write as _;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Html;
use tessera::record::SessionRecord;
use tessera::time::Timestamp;

use crate::api::types::SessionSummary;
use crate::config::duration;

/// Escapes text for HTML element content and quoted attributes.
///
/// ```
/// assert_eq!(tessera_server::site::pages::escape("<a href=\"x\">&'"),
///            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
/// ```
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · tessera</title><link rel=\"stylesheet\" href=\"/static/app.css\">\
         <script src=\"/static/app.js\" defer></script></head>\
         <body><header><a href=\"/\">tessera</a></header><main>{}</main></body></html>\n",
        escape(title),
        body
    )
}

/// Text for a sign-out reason code, if it is one we know (the code comes
/// from a query string, so unknown values are ignored, never echoed).
pub fn reason_text(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "expired_idle" => "You were signed out because of inactivity.",
        "expired_absolute" => "You were signed out because the session reached its time limit.",
        "revoked" | "revoked:other" => "You were signed out: this session was ended.",
        "revoked:other_device" => "You were signed out from another device.",
        "revoked:password_changed" => "You were signed out because your password was changed.",
        "revoked:disabled" => "You were signed out because your account was disabled.",
        "revoked:admin" => "You were signed out by an administrator.",
        "revoked:refresh_reuse" => {
            "You were signed out because your session was used from two places at once."
        }
        "revoked:session_limit" => "You were signed out because you signed in on too many devices.",
        "signed_out" => "You have signed out.",
        _ => return None,
    })
}

/// Short text for an error code.
pub fn describe_error(code: &str) -> &'static str {
    match code {
        "unauthenticated" => "You are not signed in.",
        "csrf_rejected" => "The request was refused: it did not come from this site's pages.",
        "rate_limited" => "Too many attempts. Wait a while and try again.",
        "reauth_required" => "Confirm your password first.",
        "not_found" => "Not found.",
        "unavailable" => "The service is temporarily unavailable. Try again.",
        _ => "The request could not be completed.",
    }
}

/// A small error page.
pub fn error_page(status: StatusCode, message: &str) -> Html<String> {
    Html(layout(
        status.canonical_reason().unwrap_or("Error"),
        &format!(
            "<h1>{}</h1><p class=\"notice\">{}</p><p><a href=\"/\">Back</a></p>",
            status.as_u16(),
            escape(message)
        ),
    ))
}

/// The sign-in page.
pub fn login_page(reason: Option<&str>, error: Option<&str>, csrf: Option<&str>) -> String {
    let mut body = String::from("<h1>Sign in</h1>");
    if let Some(text) = reason.and_then(reason_text) {
        let _ = write!(
            body,
            "<p class=\"notice\" id=\"reason\">{}</p>",
            escape(text)
        );
    }
    if let Some(error) = error {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape(error)
        );
    }
    body.push_str("<form method=\"post\" action=\"/login\">");
    if let Some(csrf) = csrf {
        let _ = write!(
            body,
            "<input type=\"hidden\" name=\"csrf_token\" value=\"{}\">",
            escape(csrf)
        );
    }
    body.push_str(
        "<label>User name <input name=\"username\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>",
    );
    layout("Sign in", &body)
}

/// What the home page shows.
#[derive(Debug)]
pub struct HomeView<'a> {
    /// The user.
    pub user: &'a str,
    /// The session.
    pub record: &'a SessionRecord,
    /// A CSRF token for the forms.
    pub csrf: &'a str,
    /// Server time, so the script can correct for a skewed client clock.
    pub now: Timestamp,
    /// Configured idle timeout (to size the warning).
    pub idle_timeout: Duration,
    /// Configured re-authentication window.
    pub reauth_window: Duration,
}

fn csrf_input(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf_token\" value=\"{}\">",
        escape(csrf)
    )
}

/// The home page: identity, deadlines, expiry warnings, account actions.
pub fn home_page(v: &HomeView<'_>) -> String {
    let r = v.record;
    let csrf = csrf_input(v.csrf);
    // Warn a quarter of the idle timeout ahead, at most five minutes.
    let warn_ms = (v.idle_timeout / 4)
        .min(Duration::from_secs(300))
        .as_millis();
    let authenticated = r
        .authenticated_at
        .map_or_else(|| String::from("unknown"), |t| t.to_rfc3339());
    format!(
        "<div id=\"session\" data-now=\"{now}\" data-idle=\"{idle}\" data-absolute=\"{abs}\" \
         data-warn=\"{warn_ms}\" data-csrf=\"{csrf_attr}\">\
         <h1>Signed in as <span id=\"user\">{user}</span></h1>\
         <dl>\
         <dt>Session</dt><dd><code>{handle}</code></dd>\
         <dt>Signed in at</dt><dd><time>{authenticated}</time></dd>\
         <dt>Ends after inactivity at</dt><dd><time id=\"idle-at\">{idle_text}</time> ({idle_timeout} without activity)</dd>\
         <dt>Ends at the latest at</dt><dd><time id=\"absolute-at\">{abs_text}</time></dd>\
         </dl>\
         <div id=\"idle-warning\" class=\"warning\" hidden role=\"alert\">\
         <p>You will be signed out soon because of inactivity.</p>\
         <form method=\"post\" action=\"/session/keepalive\" id=\"stay-form\">{csrf}\
         <button type=\"submit\" id=\"stay\">Stay signed in</button></form></div>\
         <div id=\"absolute-warning\" class=\"warning\" hidden role=\"alert\">\
         <p>This session reaches its time limit soon. Enter your password to continue without interruption.</p></div>\
         <section><h2>Confirm your password</h2>\
         <p>Sensitive actions need a sign-in within the last {reauth}.</p>\
         <form method=\"post\" action=\"/reauth\" id=\"reauth-form\">{csrf}\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Re-authenticate</button></form></section>\
         <section><h2>Change password</h2>\
         <form method=\"post\" action=\"/account/password\">{csrf}\
         <label>Current password <input name=\"current_password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <label>New password <input name=\"new_password\" type=\"password\" autocomplete=\"new-password\" minlength=\"8\" required></label>\
         <button type=\"submit\">Change password</button></form>\
         <p>Changing the password signs out every other device.</p></section>\
         <section><h2>Devices</h2><p><a href=\"/sessions\">Your sessions</a></p>\
         <form method=\"post\" action=\"/logout\">{csrf}<button type=\"submit\">Sign out</button></form></section>\
         </div>",
        now = v.now.as_millis(),
        idle = r.deadlines.idle.as_millis(),
        abs = r.deadlines.absolute.as_millis(),
        csrf_attr = escape(v.csrf),
        user = escape(v.user),
        handle = escape(r.handle.as_str()),
        idle_text = r.deadlines.idle.to_rfc3339(),
        abs_text = r.deadlines.absolute.to_rfc3339(),
        idle_timeout = duration::format(v.idle_timeout),
        reauth = duration::format(v.reauth_window),
    )
    .pipe(|body| layout("Home", &body))
}

/// The password every revoke form asks for (re-authentication, ASVS 5.0
/// V7.5.2).
const PASSWORD_FIELD: &str = "<input name=\"password\" type=\"password\" \
     autocomplete=\"current-password\" placeholder=\"Your password\" \
     aria-label=\"Your password\" required>";

/// The device list.
pub fn sessions_page(user: &str, list: &[SessionSummary], csrf: &str) -> String {
    let csrf_field = csrf_input(csrf);
    let mut rows = String::new();
    for s in list {
        let action = if s.current {
            String::from("<em>this device</em>")
        } else {
            format!(
                "<form method=\"post\" action=\"/sessions/{}/revoke\">{}{}<button type=\"submit\">Revoke</button></form>",
                escape(&s.handle),
                csrf_field,
                PASSWORD_FIELD
            )
        };
        let _ = write!(
            rows,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.handle),
            escape(&s.created_at),
            escape(&s.last_seen_at),
            escape(s.ip.as_deref().unwrap_or("")),
            escape(s.user_agent.as_deref().unwrap_or("")),
            action
        );
    }
    let body = format!(
        "<h1>Sessions of {}</h1><table><thead><tr><th>Session</th><th>Signed in</th><th>Last seen</th>\
         <th>IP</th><th>Browser</th><th></th></tr></thead><tbody>{}</tbody></table>\
         <p>Signing a device out needs your password.</p>\
         <form method=\"post\" action=\"/sessions/revoke-others\">{}{}\
         <button type=\"submit\">Sign out all other devices</button></form>",
        escape(user),
        rows,
        csrf_field,
        PASSWORD_FIELD
    );
    layout("Sessions", &body)
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl Pipe for String {}
