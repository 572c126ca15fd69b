//! The sign-in site in a real browser.
//!
//! The server runs with its production cookie (`__Host-session`, `Secure`)
//! on `http://127.0.0.1`: Chromium counts loopback addresses as potentially
//! trustworthy origins, so it accepts and sends `Secure` cookies there
//! (checked by the first test, which fails if it ever stops doing so).

use std::time::Duration;

use serde_json::Value;

use super::attacker::Attacker;
use super::harness::{Browser, Driver};
use crate::common::{SECURE_COOKIE, Server, metric};

fn artifacts_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts")
}

/// `GET /session` outside the browser with the browser's session cookie.
async fn status_for(server: &Server, b: &Browser) -> (u16, Value) {
    let cookie = b.client.get_named_cookie(SECURE_COOKIE).await.unwrap();
    let res = reqwest::Client::new()
        .get(server.at("/session"))
        .header("cookie", format!("{SECURE_COOKIE}={}", cookie.value()))
        .send()
        .await
        .unwrap();
    let code = res.status().as_u16();
    (code, res.json().await.unwrap())
}

#[tokio::test]
async fn sign_in_sets_a_secure_host_cookie_that_scripts_cannot_read() {
    let server = Server::start_secure(&[]);
    let mut driver = Driver::start().await;
    let b = driver.browser().await;
    b.sign_in(&server.url, "demo", server.demo_password()).await;
    assert_eq!(b.shown_user().await.as_deref(), Some("demo"));

    // The jar holds the session cookie with every attribute the server set:
    // Chromium accepted a Secure, __Host- cookie from http://127.0.0.1.
    let jar = b.client.get_all_cookies().await.unwrap();
    let session = jar
        .iter()
        .find(|c| c.name() == SECURE_COOKIE)
        .unwrap_or_else(|| panic!("no {SECURE_COOKIE} in the cookie jar: {jar:?}"));
    assert_eq!(session.secure(), Some(true), "{session:?}");
    assert_eq!(session.http_only(), Some(true), "{session:?}");
    assert!(
        session.same_site().is_some_and(|s| s.is_strict()),
        "{session:?}"
    );
    assert_eq!(session.path(), Some("/"), "{session:?}");
    // Host-only (no Domain attribute): WebDriver reports the bare host,
    // without the leading dot of a domain cookie.
    assert_eq!(session.domain(), Some("127.0.0.1"), "{session:?}");
    assert!(session.value().starts_with("tss_"), "{session:?}");
    assert!(
        session.expires().is_some(),
        "the cookie carries Max-Age (the absolute lifetime): {session:?}"
    );

    // Scripts see other cookies but never the session (HttpOnly).
    let seen = b
        .js("document.cookie = 'probe=visible; path=/'; return document.cookie;")
        .await;
    let seen = seen.as_str().unwrap_or_default();
    assert!(seen.contains("probe=visible"), "document.cookie: {seen:?}");
    assert!(
        !seen.contains("session") && !seen.contains(session.value()),
        "document.cookie shows the session: {seen:?}"
    );

    // The cookie is what keeps the browser signed in.
    let (code, body) = status_for(&server, &b).await;
    assert_eq!((code, body["user"].as_str()), (200, Some("demo")), "{body}");

    // A picture of the signed-in home page, for a person to look at.
    let png = b.client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::create_dir_all(artifacts_dir()).unwrap();
    std::fs::write(artifacts_dir().join("home.png"), png).unwrap();
}

/// Chromium keeps the `no-store` home page in its back/forward cache (it
/// evicts such pages only on cookie changes made while the page is cached;
/// the sign-out response clears the cookie before that). `app.js` hides a
/// page restored that way and reloads it, so the server decides.
#[tokio::test]
async fn after_sign_out_the_back_button_shows_no_authenticated_page() {
    let server = Server::start_secure(&[]);
    let mut driver = Driver::start().await;
    let b = driver.browser().await;
    b.sign_in(&server.url, "demo", server.demo_password()).await;
    let handle = b
        .js("return document.getElementById('session').dataset.handle;")
        .await;
    let handle = handle.as_str().unwrap().to_owned();

    // A mark in the page's JavaScript heap: still there after Back means
    // the very same document came back from the back/forward cache.
    b.js("window.__signedInDocument = true; return null;").await;
    b.click_and_load("form[action='/logout'] button").await;
    b.wait_until(
        "location.search === '?reason=signed_out' && document.getElementById('reason') !== null",
        "the signed-out page",
    )
    .await;
    assert!(
        b.client.get_named_cookie(SECURE_COOKIE).await.is_err(),
        "the cookie survived sign-out"
    );

    // Back to the home page's history entry: it is fetched again (no-store),
    // not shown from memory or disk cache.
    b.client.back().await.unwrap();
    // A page restored from the back/forward cache may still leave by
    // itself (a `pageshow` check): wait, bounded, for a document other than
    // the signed-in one.
    b.wait_until(
        "document.readyState === 'complete' && location.search !== '?reason=signed_out' \
         && window.__signedInDocument !== true",
        "Back to show a freshly loaded page, not the cached signed-in document",
    )
    .await;
    let html = b.source().await;
    let restored = b.js("return window.__signedInDocument === true;").await;
    let nav = b
        .js("return performance.getEntriesByType('navigation')[0].type;")
        .await;
    assert!(
        restored == Value::Bool(false),
        "Back restored the signed-in document from the back/forward cache \
         (navigation type {nav}) after sign-out:\n{html}"
    );
    assert!(
        b.shown_user().await.is_none() && !html.contains("Signed in as") && !html.contains(&handle),
        "the back button showed the signed-in page from cache:\n{html}"
    );
    assert!(
        html.contains("action=\"/login\""),
        "expected the sign-in form:\n{html}"
    );
}

#[tokio::test]
async fn idle_warning_stay_signed_in_then_signed_out_for_inactivity() {
    // 12 s idle timeout: the page warns in the last 3 s (a quarter). The
    // touch step keeps page loads from moving the deadline, so only "Stay
    // signed in" does.
    let mut server = Server::start_secure(&[
        ("TESSERA_IDLE_TIMEOUT", "12s"),
        ("TESSERA_TOUCH_STEP", "11s"),
    ]);
    let start = server.clock_ms;
    let mut driver = Driver::start().await;
    let b = driver.browser().await;
    b.sign_in(&server.url, "demo", server.demo_password()).await;
    assert_eq!(
        b.js("return document.getElementById('idle-warning').hidden;")
            .await,
        Value::Bool(true),
        "warning shown right after sign-in"
    );

    // Ten seconds of (server) inactivity later, the page opens with two
    // seconds left: the warning shows.
    server.advance(Duration::from_secs(10));
    b.goto(&server.url).await;
    b.wait_until(
        "!document.getElementById('idle-warning').hidden",
        "the idle warning",
    )
    .await;
    let idle_before = b
        .js("return Date.parse(document.getElementById('idle-at').getAttribute('datetime'));")
        .await;
    assert_eq!(idle_before.as_i64(), Some(start + 12_000));

    // "Stay signed in": the warning goes away and the deadline moves to a
    // full idle timeout after now (server time start + 10 s).
    b.js("window.__warningHidden = false;
          var w = document.getElementById('idle-warning');
          new MutationObserver(function () { if (w.hidden) { window.__warningHidden = true; } })
            .observe(w, { attributes: true });
          return null;")
        .await;
    b.click("#stay").await;
    b.wait_until(
        "window.__warningHidden === true",
        "the warning to hide after Stay signed in",
    )
    .await;
    let extended = start + 10_000 + 12_000;
    b.wait_until(
        &format!(
            "Date.parse(document.getElementById('idle-at').getAttribute('datetime')) === {extended}"
        ),
        "the new idle deadline on the page",
    )
    .await;
    // The server agrees: past the old deadline the session is alive.
    server.advance(Duration::from_secs(4));
    let (code, body) = status_for(&server, &b).await;
    assert_eq!(
        code, 200,
        "the keepalive did not extend the session: {body}"
    );
    assert_eq!(
        time::OffsetDateTime::parse(
            body["idle_expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap())
        .ok(),
        Some(extended),
        "{body}"
    );

    // Now nothing happens until the new deadline has passed on the server.
    // The page notices by itself (its status query is not activity) and
    // says why the user was signed out.
    server.advance(Duration::from_secs(9));
    b.wait_until(
        "location.pathname === '/login' && location.search === '?reason=expired_idle'",
        "the page to sign itself out",
    )
    .await;
    let reason = b
        .js("var r = document.getElementById('reason'); return r ? r.textContent : null;")
        .await;
    assert!(
        reason.as_str().unwrap_or_default().contains("inactivity"),
        "reason shown: {reason}"
    );
    // The expired session's cookie was cleared by the answer to the page's
    // status query.
    assert!(
        b.client.get_named_cookie(SECURE_COOKIE).await.is_err(),
        "the expired session's cookie is still in the jar"
    );
}

/// Waits for the refusal page the server shows a cross-site form post.
async fn assert_refused(b: &Browser, server: &Server, path: &str) {
    b.wait_until(
        &format!(
            "location.href === '{}' && document.readyState === 'complete'",
            server.at(path)
        ),
        &format!("the forged POST {path} to land"),
    )
    .await;
    let html = b.source().await;
    assert!(
        html.contains("<h1>403</h1>") && html.contains("did not come from this site"),
        "POST {path} from another site was not refused with 403:\n{html}"
    );
}

#[tokio::test]
async fn forms_posted_from_other_sites_are_refused_and_the_session_survives() {
    let server = Server::start_secure(&[]);
    server.add_user("mallory", "mallory-password-1");
    let attacker = Attacker::start().await;
    let mut driver = Driver::start().await;
    let b = driver.browser().await;
    b.sign_in(&server.url, "demo", server.demo_password()).await;
    let token_before = b.client.get_named_cookie(SECURE_COOKIE).await.unwrap();

    // `localhost` is another site than `127.0.0.1` (SameSite=Strict keeps
    // the cookie home, and Fetch Metadata says cross-site); the same host
    // on another port is the same site but another origin (the cookie is
    // sent, so only the origin check stands in the way).
    let sites = [
        format!("http://localhost:{}/", attacker.port),
        format!("http://127.0.0.1:{}/", attacker.port),
    ];
    let password = server.demo_password().to_owned();
    let attacks: [(&str, Vec<(&str, &str)>); 3] = [
        ("/logout", vec![("csrf_token", "forged")]),
        (
            "/account/password",
            vec![
                ("current_password", password.as_str()),
                ("new_password", "attacker-chose-this"),
                ("csrf_token", "forged"),
            ],
        ),
        // Login CSRF: signing the victim in as the attacker.
        (
            "/login",
            vec![("username", "mallory"), ("password", "mallory-password-1")],
        ),
    ];
    let mut refused = 0.0;
    let rejections_before = metric(&server, "tessera_csrf_rejections_total").await;
    for site in &sites {
        for (path, fields) in &attacks {
            attacker.auto_submit(&server.at(path), fields).await;
            b.goto(site).await;
            assert_refused(&b, &server, path).await;
            if refused == 0.0 {
                // The error page, for a person and for axe-core.
                super::ux::check_page(&b, "error-403").await;
            }
            refused += 1.0;
        }
    }
    let rejections_after = metric(&server, "tessera_csrf_rejections_total").await;
    assert_eq!(
        rejections_after - rejections_before,
        refused,
        "every forged post counted as a CSRF rejection"
    );

    // Still signed in, as demo, with the same cookie; the password is
    // unchanged.
    b.goto(&server.url).await;
    assert_eq!(b.shown_user().await.as_deref(), Some("demo"));
    let token_after = b.client.get_named_cookie(SECURE_COOKIE).await.unwrap();
    assert_eq!(token_before.value(), token_after.value());
    let res = reqwest::Client::new()
        .post(server.at("/login"))
        .json(&serde_json::json!({"username": "demo", "password": server.demo_password()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the password was changed");
}

#[tokio::test]
async fn revoking_another_device_signs_it_out_on_its_next_request() {
    let server = Server::start_secure(&[]);
    let mut driver = Driver::start().await;
    let laptop = driver.browser().await;
    let phone = driver.browser().await;
    laptop
        .sign_in(&server.url, "demo", server.demo_password())
        .await;
    phone
        .sign_in(&server.url, "demo", server.demo_password())
        .await;
    let phone_handle = phone
        .js("return document.getElementById('session').dataset.handle;")
        .await;
    let phone_handle = phone_handle.as_str().unwrap().to_owned();

    // The laptop sees both sessions and revokes the phone's, which needs
    // the password (ASVS 5.0 V7.5.2), asked once in a dialog: a wrong one
    // revokes nothing.
    laptop.goto(&server.at("/sessions")).await;
    let link = format!("a.revoke[data-action='/sessions/{phone_handle}/revoke']");
    laptop.click(&link).await;
    laptop
        .wait_until(
            "document.getElementById('confirm-dialog').open",
            "the password dialog",
        )
        .await;
    laptop
        .type_into("#dialog-password", "not-the-password")
        .await;
    laptop
        .click_and_load("#dialog-form button[type='submit']")
        .await;
    let html = laptop.source().await;
    assert!(
        html.contains("The password is not correct; no session was revoked."),
        "{html}"
    );
    phone.goto(&server.url).await;
    assert_eq!(
        phone.shown_user().await.as_deref(),
        Some("demo"),
        "a wrong password revoked the phone's session"
    );

    laptop.goto(&server.at("/sessions")).await;
    laptop.click(&link).await;
    laptop
        .wait_until(
            "document.getElementById('confirm-dialog').open",
            "the password dialog",
        )
        .await;
    laptop
        .type_into("#dialog-password", server.demo_password())
        .await;
    laptop
        .click_and_load("#dialog-form button[type='submit']")
        .await;
    laptop
        .wait_until(
            "location.pathname === '/sessions'",
            "the device list after revoking",
        )
        .await;
    assert!(
        !laptop.source().await.contains(&phone_handle),
        "the revoked session is still listed"
    );

    // The phone's next request finds no session.
    phone.goto(&server.url).await;
    phone
        .wait_until("location.pathname === '/login'", "the phone's sign-in page")
        .await;
    assert!(phone.shown_user().await.is_none());
    // The laptop is untouched.
    laptop.goto(&server.url).await;
    assert_eq!(laptop.shown_user().await.as_deref(), Some("demo"));
}
