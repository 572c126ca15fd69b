//! Server-rendered HTML. No inline script or style (the CSP forbids both);
//! behaviour lives in `/static/app.js`. Every interpolated value is
//! HTML-escaped.

use std::fmt::Write as _;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Html;
use tessera::record::SessionRecord;
use tessera::time::Timestamp;

use crate::activity::{Event, EventKind};
use crate::api::types::SessionSummary;

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

/// Wraps a page body: the document head (stylesheet and script, both
/// external: the CSP allows no inline ones), the site header, and `<main>`.
/// `nav` adds the signed-in navigation; `now` (server time) lets the script
/// phrase times relative to the server's clock, not a skewed client's.
fn page(title: &str, body: &str, nav: bool, now: Option<Timestamp>) -> String {
    let nav = if nav {
        "<nav aria-label=\"Account\"><a href=\"/\">Home</a><a href=\"/sessions\">Devices</a><a href=\"/activity\">Activity</a></nav>"
    } else {
        ""
    };
    let now = now.map_or_else(String::new, |t| format!(" data-now=\"{}\"", t.as_millis()));
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{} · tessera</title><link rel=\"stylesheet\" href=\"/static/app.css\">\
         <script src=\"/static/tessera-browser.js\" defer></script>\
         <script src=\"/static/app.js\" defer></script></head>\
         <body><header class=\"site\"><a class=\"brand\" href=\"/\">tessera</a>{nav}</header>\
         <main{now}>{}</main></body></html>\n",
        escape(title),
        body
    )
}

fn layout(title: &str, body: &str) -> String {
    page(title, body, false, None)
}

/// A `<time>` element: the machine-readable instant in `datetime`, the
/// server's UTC text as the content (what a page without JavaScript shows),
/// and `data-format` telling `app.js` how to phrase it in the reader's
/// time zone and language (`relative`: "2 minutes ago", "in 25 minutes";
/// `datetime`: the local date and time). `rfc3339` is the server's UTC
/// RFC 3339 text.
///
/// ```
/// use tessera_server::site::pages::time_element;
/// assert_eq!(
///     time_element("2026-12-02T18:21:03Z", "relative", None),
///     "<time datetime=\"2026-12-02T18:21:03Z\" data-format=\"relative\" \
///      title=\"2026-12-02 18:21:03 UTC\">2026-12-02 18:21 UTC</time>"
/// );
/// ```
pub fn time_element(rfc3339: &str, format: &str, id: Option<&str>) -> String {
    let id = id.map_or_else(String::new, |id| format!(" id=\"{}\"", escape(id)));
    format!(
        "<time{id} datetime=\"{dt}\" data-format=\"{format}\" title=\"{long}\">{short}</time>",
        dt = escape(rfc3339),
        format = escape(format),
        long = escape(&utc_text(rfc3339, true)),
        short = escape(&utc_text(rfc3339, false)),
    )
}

/// "2026-12-02 18:21 UTC" (with seconds when `seconds`) from RFC 3339 UTC
/// text; other text is returned unchanged.
fn utc_text(rfc3339: &str, seconds: bool) -> String {
    let (Some(date), Some(clock)) = (rfc3339.get(..10), rfc3339.get(11..19)) else {
        return rfc3339.to_owned();
    };
    if !rfc3339.ends_with('Z') {
        return rfc3339.to_owned();
    }
    let clock = if seconds {
        clock
    } else {
        clock.get(..5).unwrap_or(clock)
    };
    format!("{date} {clock} UTC")
}

/// A duration in words, to the minute: "30 minutes", "12 hours",
/// "1 day 2 hours", "45 seconds" (under a minute).
///
/// ```
/// use std::time::Duration;
/// use tessera_server::site::pages::in_words;
/// assert_eq!(in_words(Duration::from_secs(30 * 60)), "30 minutes");
/// assert_eq!(in_words(Duration::from_secs(3600 + 60)), "1 hour 1 minute");
/// assert_eq!(in_words(Duration::from_secs(12)), "12 seconds");
/// ```
pub fn in_words(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        return plural(secs, "second");
    }
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    let parts: Vec<String> = [(days, "day"), (hours, "hour"), (minutes, "minute")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| plural(n, unit))
        .collect();
    parts.join(" ")
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
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
        "revoked:dbsc_key_mismatch" => {
            "You were signed out because your session was used from another device."
        }
        "revoked:everyone" => "You were signed out because an administrator signed everybody out.",
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

/// The sign-in page. With `remember`, it offers "Keep me signed in" (the
/// remember lifetime class), unticked: the longer lifetime is the user's
/// choice on this device, never the default.
pub fn login_page(
    reason: Option<&str>,
    error: Option<&str>,
    csrf: Option<&str>,
    remember: bool,
) -> String {
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
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>",
    );
    if remember {
        body.push_str(
            "<label for=\"remember\" class=\"check\"><input id=\"remember\" name=\"remember\" \
             type=\"checkbox\" value=\"true\"> Keep me signed in</label>",
        );
    }
    body.push_str("<button type=\"submit\">Sign in</button></form>");
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
    /// Idle timeout of the session's lifetime class (to size the warning).
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

/// The password field of a confirmation form (re-authentication, ASVS 5.0
/// V7.5.2 for ending sessions, V7.5.1 for the password change).
fn password_field(id: &str, label: &str) -> String {
    format!(
        "<label for=\"{id}\">{label}</label>\
         <input id=\"{id}\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required>"
    )
}

/// The home page: who is signed in, on which device since when, when the
/// session ends (in words, with the expiry warnings and "Stay signed in"),
/// and the account actions. Re-authentication is asked for only where an
/// action needs it: the password change asks in its own section when the
/// last sign-in is older than the re-authentication window.
pub fn home_page(v: &HomeView<'_>) -> String {
    let r = v.record;
    let csrf = csrf_input(v.csrf);
    // Warn a quarter of the idle timeout ahead, at most five minutes.
    let warn_ms = (v.idle_timeout / 4)
        .min(Duration::from_secs(300))
        .as_millis();
    let device = super::device::describe(r.client.user_agent.as_deref());
    // The session's start, not the last re-authentication.
    let since = r.created_at;
    let recent = r
        .authenticated_at
        .is_some_and(|at| at.until(v.now) <= v.reauth_window);
    let password_section = if recent {
        format!(
            "<form method=\"post\" action=\"/account/password\" id=\"password-form\">{csrf}\
             <label for=\"current-password\">Current password</label>\
             <input id=\"current-password\" name=\"current_password\" type=\"password\" autocomplete=\"current-password\" required>\
             <label for=\"new-password\">New password <span class=\"hint\">(at least 8 characters)</span></label>\
             <input id=\"new-password\" name=\"new_password\" type=\"password\" autocomplete=\"new-password\" minlength=\"8\" required>\
             <button type=\"submit\">Change password</button></form>\
             <p class=\"hint\">Changing your password signs out every other device.</p>"
        )
    } else {
        format!(
            "<p>To change your password, first confirm it is you: your last sign-in \
             was more than {window} ago.</p>\
             <form method=\"post\" action=\"/reauth\" id=\"reauth-form\">{csrf}{field}\
             <button type=\"submit\">Confirm</button></form>",
            window = in_words(v.reauth_window),
            field = password_field("reauth-password", "Your password"),
        )
    };
    let body = format!(
        "<div id=\"session\" data-now=\"{now}\" data-idle=\"{idle}\" data-absolute=\"{abs}\" \
         data-warn=\"{warn_ms}\" data-csrf=\"{csrf_attr}\" data-handle=\"{handle}\">\
         <h1>Signed in as <span id=\"user\">{user}</span></h1>\
         <p class=\"lead\">Signed in on this device, <strong>{device}</strong>, since {since}.</p>\
         <div id=\"idle-warning\" class=\"warning\" hidden role=\"alert\">\
         <p>You will be signed out soon because of inactivity.</p>\
         <form method=\"post\" action=\"/session/keepalive\" id=\"stay-form\">{csrf}\
         <button type=\"submit\" id=\"stay\">Stay signed in</button></form></div>\
         <div id=\"absolute-warning\" class=\"warning\" hidden role=\"alert\">\
         <p>This session reaches its time limit {abs_rel}. Confirm your password to continue without interruption.</p>\
         <form method=\"post\" action=\"/reauth\">{csrf}{abs_field}\
         <button type=\"submit\">Continue</button></form></div>\
         <section class=\"card\" aria-labelledby=\"h-session\"><h2 id=\"h-session\">When this session ends</h2>\
         <ul class=\"facts\">\
         <li>Ends {idle_el} if you stay inactive (after {idle_words} without activity).</li>\
         <li>At the latest {abs_el}, however active you are.</li>\
         </ul></section>\
         <section class=\"card\" id=\"password\" aria-labelledby=\"h-password\"><h2 id=\"h-password\">Change password</h2>\
         {password_section}</section>\
         <section class=\"card\" aria-labelledby=\"h-devices\"><h2 id=\"h-devices\">Your devices</h2>\
         <p>See every device where you are signed in, and sign out the ones you do not use.</p>\
         <p class=\"actions\"><a class=\"button secondary\" href=\"/sessions\">Manage devices</a>\
         <a class=\"button secondary\" href=\"/activity\">Security activity</a></p></section>\
         <form method=\"post\" action=\"/logout\" class=\"signout\">{csrf}<button type=\"submit\" class=\"secondary\">Sign out</button></form>\
         </div>",
        now = v.now.as_millis(),
        idle = r.deadlines.idle.as_millis(),
        abs = r.deadlines.absolute.as_millis(),
        csrf_attr = escape(v.csrf),
        handle = escape(r.handle.as_str()),
        user = escape(v.user),
        device = escape(&device),
        since = time_element(&since.to_rfc3339(), "datetime", Some("since")),
        abs_rel = time_element(&r.deadlines.absolute.to_rfc3339(), "relative", None),
        abs_field = password_field("absolute-password", "Your password"),
        idle_words = in_words(v.idle_timeout),
        idle_el = time_element(&r.deadlines.idle.to_rfc3339(), "relative", Some("idle-at")),
        abs_el = time_element(
            &r.deadlines.absolute.to_rfc3339(),
            "relative",
            Some("absolute-at")
        ),
    );
    page("Home", &body, true, Some(v.now))
}

/// What the device list asks to confirm (from `?confirm=` or a refused
/// attempt): signing out one device, or all the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm<'a> {
    /// Sign out the session with this handle.
    Device(&'a str),
    /// Sign out every other session.
    Others,
}

/// What the device list shows.
#[derive(Debug)]
pub struct SessionsView<'a> {
    /// The user's sessions.
    pub list: &'a [SessionSummary],
    /// A CSRF token for the forms.
    pub csrf: &'a str,
    /// Server time.
    pub now: Timestamp,
    /// A confirmation to show in the page (the no-JavaScript path, and
    /// after a refused password).
    pub confirm: Option<Confirm<'a>>,
    /// Why the last attempt was refused.
    pub error: Option<&'a str>,
}

/// The confirmation form for `confirm`: one password field, whichever
/// device is signed out. With JavaScript it lives in a `<dialog>`; without,
/// the server renders it in the page.
fn confirm_form(csrf: &str, action: &str, what: &str, error: Option<&str>, id: &str) -> String {
    let error = error.map_or_else(String::new, |e| {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"{id}-error\">{}</p>",
            escape(e)
        )
    });
    format!(
        "<form method=\"post\" action=\"{action}\" id=\"{id}-form\" class=\"confirm\">\
         <h2 id=\"{id}-title\">Sign out <span id=\"{id}-what\">{what}</span>?</h2>\
         {error}<p>Enter your password to confirm it is you.</p>{csrf}{field}\
         <div class=\"actions\"><button type=\"submit\" class=\"danger\">Sign out</button>\
         <a class=\"button secondary\" href=\"/sessions\" id=\"{id}-cancel\">Cancel</a></div></form>",
        action = escape(action),
        what = escape(what),
        csrf = csrf_input(csrf),
        field = password_field(&format!("{id}-password"), "Your password"),
    )
}

/// The device list: one entry per session, named after its browser and
/// system, "This device" marked, last activity and sign-in time, the IP
/// address as secondary detail; one "Sign out" per other device and "Sign
/// out all other devices", each confirmed by the password once.
pub fn sessions_page(v: &SessionsView<'_>) -> String {
    let mut items = String::new();
    let mut others = 0usize;
    let mut confirm_what = None;
    // This device first, then the most recently active.
    let mut sorted: Vec<&SessionSummary> = v.list.iter().collect();
    sorted.sort_by(|a, b| {
        b.current
            .cmp(&a.current)
            .then_with(|| b.last_seen_at.cmp(&a.last_seen_at))
    });
    for s in sorted {
        let name = super::device::describe(s.user_agent.as_deref());
        let action = if s.current {
            format!(
                "<form method=\"post\" action=\"/logout\">{}\
                 <button type=\"submit\" class=\"secondary\">Sign out</button></form>",
                csrf_input(v.csrf)
            )
        } else {
            others += 1;
            if v.confirm == Some(Confirm::Device(&s.handle)) {
                confirm_what = Some((format!("/sessions/{}/revoke", s.handle), name.clone()));
            }
            format!(
                "<a class=\"button secondary revoke\" href=\"/sessions?confirm={h}#confirm\" \
                 data-action=\"/sessions/{h}/revoke\" data-what=\"{n}\" \
                 aria-label=\"Sign out {n}, signed in {created}\">Sign out</a>",
                h = escape(&s.handle),
                n = escape(&name),
                created = escape(&utc_text(&s.created_at, false)),
            )
        };
        let badge = if s.current {
            " <span class=\"badge\">This device</span>"
        } else {
            ""
        };
        let ip = s.ip.as_deref().map_or_else(String::new, |ip| {
            format!("<p class=\"secondary-text\">IP address {}</p>", escape(ip))
        });
        let _ = write!(
            items,
            "<li class=\"device{current}\" data-handle=\"{handle}\">\
             <div class=\"device-text\"><h2 class=\"device-name\">{name}{badge}</h2>\
             <p>Last active {last} · signed in {created}</p>{ip}</div>\
             <div class=\"device-action\">{action}</div></li>",
            current = if s.current { " current" } else { "" },
            handle = escape(&s.handle),
            name = escape(&name),
            last = time_element(&s.last_seen_at, "relative", None),
            created = time_element(&s.created_at, "datetime", None),
        );
    }
    if v.confirm == Some(Confirm::Others) && others > 0 {
        confirm_what = Some((
            String::from("/sessions/revoke-others"),
            String::from("all other devices"),
        ));
    }
    let count = match v.list.len() {
        1 => String::from("You are signed in on this device only."),
        n => format!("You are signed in on {n} devices."),
    };
    let all_others = if others > 0 {
        "<p><a class=\"button danger revoke\" href=\"/sessions?confirm=others#confirm\" \
         data-action=\"/sessions/revoke-others\" data-what=\"all other devices\" \
         id=\"revoke-others\">Sign out all other devices</a></p>"
    } else {
        ""
    };
    // Without JavaScript (or after a refused password) the confirmation is
    // part of the page; with it, the same form opens in a dialog.
    let inline = confirm_what.map_or_else(String::new, |(action, what)| {
        format!(
            "<section class=\"card\" id=\"confirm\" aria-labelledby=\"confirm-title\">{}</section>",
            confirm_form(v.csrf, &action, &what, v.error, "confirm")
        )
    });
    let body = format!(
        "<h1>Your devices</h1><p class=\"lead\">{count} If you do not recognise a device, \
         sign it out and change your password.</p>{inline}\
         <ul class=\"devices\">{items}</ul>{all_others}\
         <dialog id=\"confirm-dialog\" aria-labelledby=\"dialog-title\">{dialog}</dialog>",
        dialog = confirm_form(v.csrf, "/sessions", "this device", None, "dialog"),
    );
    page("Your devices", &body, true, Some(v.now))
}

/// One security event in words: what happened, and from where.
fn describe_event(e: &Event) -> (String, String) {
    let device = super::device::describe(e.user_agent.as_deref());
    let from = match e.ip.as_deref() {
        Some(ip) => format!("{device} · IP address {ip}"),
        None => device,
    };
    let n = |d: &str| match d {
        "1" => String::from("1 device"),
        d => format!("{d} devices"),
    };
    match e.kind {
        EventKind::SignedIn => (String::from("Signed in"), from),
        EventKind::SignedOut => (String::from("Signed out"), from),
        EventKind::DeviceSignedOut => (
            format!("Signed out {}", e.detail),
            format!("by you, from {from}"),
        ),
        EventKind::OthersSignedOut => (
            format!("Signed out all other devices ({})", n(&e.detail)),
            format!("by you, from {from}"),
        ),
        EventKind::PasswordChanged => (
            String::from("Password changed"),
            format!("from {from}; other devices signed out: {}", n(&e.detail)),
        ),
        EventKind::RefreshReuseDetected => (
            String::from("An app's sign-in was used twice, so it was signed out"),
            String::from(
                "a refresh token was presented again after it had been used: \
                 possibly a stolen copy; sign in to that app again",
            ),
        ),
        EventKind::AdminSignedOut => (
            format!("Signed out by an administrator ({})", n(&e.detail)),
            String::from("every device of the account"),
        ),
    }
}

/// The security activity page: the user's recent events, newest first.
pub fn activity_page(events: &[Event], now: Timestamp) -> String {
    let mut items = String::new();
    for e in events {
        let (what, from) = describe_event(e);
        let at = Timestamp::from_millis(e.at_ms).to_rfc3339();
        let _ = write!(
            items,
            "<li class=\"event {kind}\"><div class=\"event-text\"><h2 class=\"event-what\">{what}</h2>\
             <p class=\"secondary-text\">{from}</p></div>{time}</li>",
            kind = e.kind.as_str(),
            what = escape(&what),
            from = escape(&from),
            time = time_element(&at, "relative", None),
        );
    }
    let list = if items.is_empty() {
        String::from("<p>Nothing yet.</p>")
    } else {
        format!("<ul class=\"events\">{items}</ul>")
    };
    let body = format!(
        "<h1>Security activity</h1><p class=\"lead\">Sign-ins, sign-outs and password \
         changes of your account, newest first (the last {keep}, up to {days} days). \
         If something here was not you, <a href=\"/sessions\">sign out the device</a> \
         and change your password.</p>{list}",
        keep = crate::activity::KEEP_PER_USER,
        days = crate::activity::RETENTION.as_secs() / 86_400,
    );
    page("Security activity", &body, true, Some(now))
}
