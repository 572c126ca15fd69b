//! The browser routes: sign-in, status, keepalive, logout, device list,
//! re-authentication, password change, expiry, rate limits, headers, CSRF.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    Server, client, cookie_header, create_session, delete_session, demo_login, get, get_text,
    list_sessions, login, session_cookie, status, try_login,
};

#[tokio::test]
async fn first_start_creates_demo_user_once() {
    let server = Server::start(&[]);
    let password = server.demo_password.clone().expect("demo password printed");
    assert_eq!(password.len(), 20);
    assert!(
        !server.logs().contains(&password),
        "the password must not be logged"
    );
    // The password works; a restart on the same file does not create another.
    demo_login(&server).await;
    let dir = server.stop();
    let again = Server::start_in(dir, &[]);
    assert!(again.demo_password.is_none());
}

#[tokio::test]
async fn login_sets_a_new_cookie_and_kills_the_old_token() {
    let server = Server::start(&[]);
    let first = demo_login(&server).await;
    assert_eq!(first.body["user"], "demo");
    for field in [
        "handle",
        "csrf_token",
        "idle_expires_at",
        "absolute_expires_at",
    ] {
        assert!(first.body[field].is_string(), "{field}");
    }

    // Signing in again while presenting the first token issues a new one and
    // kills the old (fixation). A request that presents a live session is
    // unsafe for it, so it carries that session's CSRF token.
    let res = client()
        .post(server.at("/login"))
        .header("cookie", cookie_header(&first.token))
        .header("x-csrf-token", &first.csrf)
        .json(&json!({"username": "demo", "password": server.demo_password.as_deref().unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let second = session_cookie(res.headers()).unwrap();
    assert_ne!(second, first.token);
    assert_eq!(status(&server, &first.token).await.0, 401);
    assert_eq!(status(&server, &second).await.0, 200);

    // The form variant answers 303 to / with the cookie set HttpOnly.
    let res = client()
        .post(server.at("/login"))
        .form(&[
            ("username", "demo"),
            ("password", server.demo_password.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/");
    let set = res.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"));
}

/// A sign-in is a new session identity: signing in on a session another
/// user planted (session fixation) gives a new handle as well as a new
/// token, and nothing answers to the planted session's handle any more.
#[tokio::test]
async fn sign_in_on_a_planted_session_is_a_new_identity() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let (ok, _, err) = server.cli(
        &["user", "add", "mallory", "--password-stdin"],
        Some("mallory-password-1\n"),
    );
    assert!(ok, "{err}");
    let planted = login(&server, "mallory", "mallory-password-1").await;
    let res = client()
        .post(server.at("/login"))
        .header("cookie", cookie_header(&planted.token))
        .header("x-csrf-token", &planted.csrf)
        .json(&json!({"username": "demo", "password": server.demo_password.as_deref().unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let token = session_cookie(res.headers()).unwrap();
    let body: Value = res.json().await.unwrap();
    let handle = body["handle"].as_str().unwrap().to_owned();
    assert_ne!(handle, planted.handle, "a sign-in mints a new handle");
    assert_eq!(status(&server, &planted.token).await.0, 401);
    assert!(list_sessions(&server, &key, "mallory").await.is_empty());
    let demo: Vec<String> = list_sessions(&server, &key, "demo")
        .await
        .iter()
        .map(|s| s["handle"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(demo, vec![handle.clone()]);
    // The planted handle cannot be used to revoke (or find) demo's session.
    assert_eq!(
        delete_session(&server, &key, &planted.handle)
            .await
            .status(),
        404
    );
    assert_eq!(status(&server, &token).await.0, 200);
}

/// A refused session says why it ended (`signed_out`, `revoked` with who
/// or what revoked it, `missing`), and the sign-in page says it in words.
#[tokio::test]
async fn an_ended_session_says_why_and_the_sign_in_page_tells_the_person() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let password = server.demo_password.clone().unwrap();
    let here = demo_login(&server).await;
    let phone = demo_login(&server).await;
    let tablet = demo_login(&server).await;

    let res = client()
        .post(server.at("/sessions/revoke-others"))
        .header("cookie", cookie_header(&here.token))
        .header("x-csrf-token", &here.csrf)
        .json(&json!({"password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for revoked in [&phone, &tablet] {
        let (code, body) = status(&server, &revoked.token).await;
        assert_eq!(code, 401);
        assert_eq!(body["reason"], "revoked");
        assert_eq!(body["revoked_by"], "other_device");
    }
    // The page a revoked browser opens sends it to the sign-in page, which
    // says what happened.
    let res = client()
        .get(server.at("/"))
        .header("cookie", cookie_header(&phone.token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/login?reason=revoked&by=other_device");
    let page = get_text(&server, &location).await;
    assert!(
        page.contains("You were signed out from another device."),
        "{page}"
    );
    let page = get_text(&server, "/login?reason=revoked&by=password_changed").await;
    assert!(
        page.contains("You were signed out because your password was changed."),
        "{page}"
    );
    let page = get_text(&server, "/login?reason=revoked&by=%3Cscript%3E").await;
    assert!(!page.contains("<script>") && !page.contains("id=\"reason\""));

    // An administrator's revocation through /v1.
    assert_eq!(
        delete_session(&server, &key, &here.handle).await.status(),
        204
    );
    let (code, body) = status(&server, &here.token).await;
    assert_eq!((code, body["reason"].as_str()), (401, Some("revoked")));
    assert_eq!(body["revoked_by"], "admin");

    // An unknown (well-formed) token is still just missing.
    let (code, body) = status(
        &server,
        "tss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_AAAAAA",
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (401, Some("missing")));
    assert!(body.get("revoked_by").is_none());
}

#[tokio::test]
async fn failed_logins_are_generic_and_rate_limited() {
    let server = Server::start(&[
        ("TESSERA_LOGIN_MAX_FAILURES_PER_USER", "3"),
        ("TESSERA_LOGIN_MAX_FAILURES_PER_IP", "100"),
    ]);
    let attempt = |user: &'static str, password: String| {
        let url = server.at("/login");
        async move {
            client()
                .post(url)
                .json(&json!({"username": user, "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    let unknown = attempt("nobody", "whatever-pass".into()).await;
    assert_eq!(unknown.status(), 401);
    assert!(session_cookie(unknown.headers()).is_none());
    let unknown: Value = unknown.json().await.unwrap();
    let wrong: Value = attempt("demo", "wrong-password".into())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        unknown, wrong,
        "same answer for unknown user and wrong password"
    );

    attempt("demo", "wrong-password".into()).await;
    attempt("demo", "wrong-password".into()).await;
    // Now even the right password is refused until the window passes.
    let res = attempt("demo", server.demo_password.clone().unwrap()).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 15 * 60 + 1);
    assert!(session_cookie(res.headers()).is_none());
    // Another user is not affected.
    assert_eq!(
        attempt("nobody", "whatever-pass".into()).await.status(),
        401
    );

    let logs = server.logs();
    assert!(logs.contains("\"event\":\"login_failed\""), "{logs}");
    assert!(logs.contains("\"event\":\"rate_limited\""), "{logs}");
    assert!(!logs.contains("wrong-password"), "passwords never logged");
    let metrics = get_text(&server, "/metrics").await;
    // Four failures before the limit, one for "nobody" after it.
    assert!(
        metrics.contains("tessera_login_failures_total 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn login_csrf_and_foreign_origins_are_refused() {
    let server = Server::start(&[]);
    let pw = server.demo_password.clone().unwrap();
    for (header, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "http://evil.example"),
    ] {
        let res = client()
            .post(server.at("/login"))
            .header(header, value)
            .form(&[("username", "demo"), ("password", pw.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{header}");
        assert!(session_cookie(res.headers()).is_none());
    }
    // Same-origin is fine.
    let origin = server.url.trim_end_matches('/').to_owned();
    let res = client()
        .post(server.at("/login"))
        .header("origin", origin)
        .header("sec-fetch-site", "same-origin")
        .form(&[("username", "demo"), ("password", pw.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
}

#[tokio::test]
async fn status_query_does_not_count_as_activity_but_keepalive_does() {
    let mut server = Server::start(&[
        ("TESSERA_IDLE_TIMEOUT", "10m"),
        ("TESSERA_TOUCH_STEP", "1m"),
    ]);
    let s = demo_login(&server).await;
    let (code, first) = status(&server, &s.token).await;
    assert_eq!(code, 200);
    for field in [
        "user",
        "handle",
        "created_at",
        "last_seen_at",
        "authenticated_at",
        "idle_expires_at",
        "absolute_expires_at",
        "csrf_token",
    ] {
        assert!(!first[field].is_null(), "{field}");
    }
    server.advance(Duration::from_secs(5 * 60));
    let (_, later) = status(&server, &s.token).await;
    assert_eq!(
        later["idle_expires_at"], first["idle_expires_at"],
        "status must not touch"
    );

    // Keepalive without a CSRF token: refused, deadline unchanged.
    let res = client()
        .post(server.at("/session/keepalive"))
        .header("cookie", cookie_header(&s.token))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(
        status(&server, &s.token).await.1["idle_expires_at"],
        first["idle_expires_at"]
    );

    let res = client()
        .post(server.at("/session/keepalive"))
        .header("cookie", cookie_header(&s.token))
        .header("accept", "application/json")
        .header("x-csrf-token", &s.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let moved: Value = res.json().await.unwrap();
    assert_ne!(moved["idle_expires_at"], first["idle_expires_at"]);

    // 9 more minutes: alive thanks to the keepalive; 11: gone, with the reason.
    server.advance(Duration::from_secs(9 * 60));
    assert_eq!(status(&server, &s.token).await.0, 200);
    server.advance(Duration::from_secs(2 * 60));
    let (code, body) = status(&server, &s.token).await;
    assert_eq!(code, 401);
    assert_eq!(
        body,
        json!({"error": "unauthenticated", "reason": "expired_idle"})
    );
}

#[tokio::test]
async fn expired_sessions_show_why_on_the_home_page() {
    let mut server = Server::start(&[
        ("TESSERA_IDLE_TIMEOUT", "10m"),
        ("TESSERA_ABSOLUTE_TIMEOUT", "30m"),
    ]);
    // Idle.
    let s = demo_login(&server).await;
    server.advance(Duration::from_secs(11 * 60));
    let res = client()
        .get(server.at("/"))
        .header("cookie", cookie_header(&s.token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login?reason=expired_idle");
    assert_eq!(
        session_cookie(res.headers()).as_deref(),
        Some(""),
        "dead cookie cleared"
    );
    let page = get_text(&server, "/login?reason=expired_idle").await;
    assert!(page.contains("because of inactivity"), "{page}");

    // Absolute: activity every 9 minutes does not help past 30 minutes.
    let s = demo_login(&server).await;
    for _ in 0..3 {
        server.advance(Duration::from_secs(9 * 60));
        let res = client()
            .get(server.at("/"))
            .header("cookie", cookie_header(&s.token))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    server.advance(Duration::from_secs(4 * 60));
    let (code, body) = status(&server, &s.token).await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (401, Some("expired_absolute"))
    );
    let page = get_text(&server, "/login?reason=expired_absolute").await;
    assert!(page.contains("time limit"));
    // Unknown reasons are not echoed.
    let page = get_text(&server, "/login?reason=%3Cscript%3E").await;
    assert!(!page.contains("<script>alert") && !page.contains("%3Cscript"));
}

#[tokio::test]
async fn home_page_and_security_headers() {
    let server = Server::start(&[]);
    let s = demo_login(&server).await;
    let res = client()
        .get(server.at("/"))
        .header("cookie", cookie_header(&s.token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(h["referrer-policy"], "same-origin");
    assert_eq!(h["cache-control"], "no-store");
    let page = res.text().await.unwrap();
    for needle in [
        "Signed in as",
        "demo",
        "Stay signed in",
        "When this session ends",
        "/static/app.js",
        "csrf_token",
    ] {
        assert!(page.contains(needle), "{needle}");
    }
    assert!(!page.contains("<script>"), "no inline script");
    let js = get(&server, "/static/app.js").await;
    assert_eq!(js.status(), 200);
    assert!(js.text().await.unwrap().contains("/session/keepalive"));
    // The browser helper is served as published in clients/browser.
    let helper = get(&server, "/static/tessera-browser.js").await;
    assert_eq!(helper.status(), 200);
    let published = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../clients/browser/tessera-browser.js"),
    )
    .unwrap();
    assert!(
        helper.text().await.unwrap() == published,
        "static/tessera-browser.js differs from clients/browser/tessera-browser.js: copy it"
    );
    // Without a session, / sends you to sign in.
    let res = get(&server, "/").await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login");
}

#[tokio::test]
async fn logout_deletes_the_session_and_clears_the_cookie() {
    let server = Server::start(&[]);
    let s = demo_login(&server).await;
    // Without CSRF: refused, still signed in.
    let res = client()
        .post(server.at("/logout"))
        .header("cookie", cookie_header(&s.token))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(status(&server, &s.token).await.0, 200);

    let res = client()
        .post(server.at("/logout"))
        .header("cookie", cookie_header(&s.token))
        .header("accept", "application/json")
        .header("x-csrf-token", &s.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(session_cookie(res.headers()).as_deref(), Some(""));
    let (code, body) = status(&server, &s.token).await;
    assert_eq!((code, body["reason"].as_str()), (401, Some("signed_out")));

    // Form variant: 303.
    let s = demo_login(&server).await;
    let res = client()
        .post(server.at("/logout"))
        .header("cookie", cookie_header(&s.token))
        .form(&[("csrf_token", s.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
}

#[tokio::test]
async fn device_list_revoke_and_revoke_others() {
    let server = Server::start(&[]);
    let a = demo_login(&server).await;
    let b = demo_login(&server).await;
    let c = demo_login(&server).await;
    let res = client()
        .get(server.at("/sessions"))
        .header("cookie", cookie_header(&a.token))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let list: Vec<Value> = res.json().await.unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let current = list.iter().find(|s| s["current"] == true).unwrap();
    assert_eq!(current["handle"], a.handle.as_str());
    for field in ["handle", "created_at", "last_seen_at", "ip", "user_agent"] {
        assert!(current.get(field).is_some(), "{field}");
    }

    // DELETE another session: needs CSRF and the current password.
    let password = server.demo_password.clone().unwrap();
    let url = server.at(&format!("/sessions/{}", b.handle));
    let res = client()
        .delete(&url)
        .header("cookie", cookie_header(&a.token))
        .json(&json!({"password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(status(&server, &b.token).await.0, 200);
    let res = client()
        .delete(&url)
        .header("cookie", cookie_header(&a.token))
        .header("x-csrf-token", &a.csrf)
        .json(&json!({"password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(status(&server, &b.token).await.0, 401);

    // Another user's handle cannot be revoked.
    let key = server.api_key();
    let other: Value = create_session(&server, &key, "someone").await;
    let res = client()
        .delete(server.at(&format!("/sessions/{}", other["handle"].as_str().unwrap())))
        .header("cookie", cookie_header(&a.token))
        .header("x-csrf-token", &a.csrf)
        .json(&json!({"password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    let res = client()
        .post(server.at("/sessions/revoke-others"))
        .header("cookie", cookie_header(&a.token))
        .header("x-csrf-token", &a.csrf)
        .json(&json!({"password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"revoked": 1}));
    assert_eq!(status(&server, &c.token).await.0, 401);
    assert_eq!(status(&server, &a.token).await.0, 200);
}

/// ASVS 5.0 V7.5.2: ending sessions needs the password again. A missing or
/// wrong one revokes nothing (JSON, the HTML form and "sign out all other
/// devices" alike); failures are audited and counted by the sign-in
/// limiter, which then refuses even the right password.
#[tokio::test]
async fn revoking_without_the_right_password_revokes_nothing() {
    let server = Server::start(&[("TESSERA_LOGIN_MAX_FAILURES_PER_USER", "4")]);
    let a = demo_login(&server).await;
    let b = demo_login(&server).await;
    let url = server.at(&format!("/sessions/{}", b.handle));

    // No password: 400, nothing counted.
    let res = client()
        .delete(&url)
        .header("cookie", cookie_header(&a.token))
        .header("x-csrf-token", &a.csrf)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "password_required"
    );
    assert_eq!(status(&server, &b.token).await.0, 200);

    // A wrong password, as JSON: 401 invalid_credentials.
    let res = client()
        .delete(&url)
        .header("cookie", cookie_header(&a.token))
        .header("x-csrf-token", &a.csrf)
        .json(&json!({"password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_credentials", "{body}");
    assert_eq!(status(&server, &b.token).await.0, 200);

    // The HTML form: an error page that says so.
    let res = client()
        .post(server.at(&format!("/sessions/{}/revoke", b.handle)))
        .header("cookie", cookie_header(&a.token))
        .form(&[
            ("csrf_token", a.csrf.as_str()),
            ("password", "wrong-password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("The password is not correct; no session was revoked."),
        "{html}"
    );
    assert_eq!(status(&server, &b.token).await.0, 200);

    // Sign out all other devices, wrong password.
    let res = client()
        .post(server.at("/sessions/revoke-others"))
        .header("cookie", cookie_header(&a.token))
        .form(&[
            ("csrf_token", a.csrf.as_str()),
            ("password", "wrong-password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(status(&server, &b.token).await.0, 200);

    // Audited, per failure, without the password.
    let logs = server.logs();
    let failures = logs
        .lines()
        .filter(|l| l.contains("\"reauth_failed\""))
        .count();
    assert_eq!(failures, 3, "{logs}");
    assert!(!logs.contains("wrong-password"), "{logs}");

    // One more failure reaches the limit of 4: then 429, even for the
    // right password, and still nothing is revoked.
    let res = client()
        .delete(&url)
        .header("cookie", cookie_header(&a.token))
        .header("x-csrf-token", &a.csrf)
        .json(&json!({"password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = client()
        .delete(&url)
        .header("cookie", cookie_header(&a.token))
        .header("x-csrf-token", &a.csrf)
        .json(&json!({"password": server.demo_password.clone().unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(status(&server, &b.token).await.0, 200);
    assert_eq!(status(&server, &a.token).await.0, 200);
}

#[tokio::test]
async fn password_change_needs_recent_reauth_and_revokes_other_sessions() {
    let mut server = Server::start(&[
        ("TESSERA_REAUTH_WINDOW", "5m"),
        ("TESSERA_IDLE_TIMEOUT", "30m"),
    ]);
    let pw = server.demo_password.clone().unwrap();
    let a = demo_login(&server).await;
    let other = demo_login(&server).await;
    server.advance(Duration::from_secs(6 * 60));

    let change = |token: &str, csrf: &str, current: &str| {
        client()
            .post(server.at("/account/password"))
            .header("cookie", cookie_header(token))
            .header("x-csrf-token", csrf)
            .json(&json!({"current_password": current, "new_password": "brand-new-password"}))
    };
    let res = change(&a.token, &a.csrf, &pw).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "reauth_required"
    );

    // Re-authenticate: wrong password refused, right one rotates the token.
    let reauth = |password: &str| {
        client()
            .post(server.at("/reauth"))
            .header("cookie", cookie_header(&a.token))
            .header("x-csrf-token", &a.csrf)
            .json(&json!({"password": password}))
    };
    assert_eq!(
        reauth("not-the-password").send().await.unwrap().status(),
        401
    );
    let res = reauth(&pw).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let token = session_cookie(res.headers()).unwrap();
    assert_ne!(token, a.token);
    let body: Value = res.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(
        status(&server, &a.token).await.0,
        401,
        "old token dead after reauth"
    );

    // Wrong current password: refused, nothing changed.
    let res = change(&token, &csrf, "not-the-password")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(status(&server, &other.token).await.0, 200);

    let res = change(&token, &csrf, &pw).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let new_token = session_cookie(res.headers()).expect("rotated on password change");
    assert_eq!(res.json::<Value>().await.unwrap()["revoked"], 1);
    assert_eq!(status(&server, &other.token).await.0, 401);
    assert_eq!(status(&server, &new_token).await.0, 200);
    // The new password works, the old one does not.
    login(&server, "demo", "brand-new-password").await;
    let res = try_login(&server, "demo", &pw).await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn junk_cookies_are_401_never_500() {
    let server = Server::start(&[]);
    let real = demo_login(&server).await;
    let junk = [
        "session=".to_owned(),
        "session=tss_".to_owned(),
        format!("session={}", "A".repeat(8000)),
        format!("session={}", flip_last(&real.token)),
        "session=\u{7f}\u{1}".to_owned(),
    ];
    for cookie in junk {
        let Ok(value) = reqwest::header::HeaderValue::from_bytes(cookie.as_bytes()) else {
            continue;
        };
        let res = client()
            .get(server.at("/session"))
            .header("cookie", value)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{cookie:.40}");
    }
    // Two different valid tokens: ambiguous, refused.
    let other = demo_login(&server).await;
    let both = format!("session={}; session={}", real.token, other.token);
    let res = client()
        .get(server.at("/session"))
        .header("cookie", both)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Both sessions are still intact.
    assert_eq!(status(&server, &real.token).await.0, 200);
    assert_eq!(status(&server, &other.token).await.0, 200);
}

/// The token with its last character changed (a forged checksum).
fn flip_last(token: &str) -> String {
    let mut s = token.to_owned();
    let last = s.pop().unwrap();
    s.push(if last == 'A' { 'B' } else { 'A' });
    s
}

#[tokio::test]
async fn signing_in_again_from_a_live_session_needs_its_csrf_token() {
    let server = Server::start(&[]);
    let pw = server.demo_password.clone().unwrap();
    let s = demo_login(&server).await;
    // The sign-in page of a signed-in browser carries the session's token…
    let page = client()
        .get(server.at("/login"))
        .header("cookie", cookie_header(&s.token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = page.find(marker).expect("csrf field in the form") + marker.len();
    let csrf = &page[start..start + page[start..].find('"').unwrap()];
    // …and none without a session.
    let anonymous = get(&server, "/login").await;
    assert!(!anonymous.text().await.unwrap().contains("csrf_token"));

    let form = [("username", "demo"), ("password", pw.as_str())];
    // Without it: refused in the server's formats, still signed in.
    let res = client()
        .post(server.at("/login"))
        .header("cookie", cookie_header(&s.token))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let res = client()
        .post(server.at("/login"))
        .header("cookie", cookie_header(&s.token))
        .header("accept", "application/json")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"error": "csrf_rejected", "reason": "csrf_token_missing"})
    );
    assert_eq!(status(&server, &s.token).await.0, 200);

    // With the field from the page: a new session, the old token dead.
    let mut with_token = form.to_vec();
    with_token.push(("csrf_token", csrf));
    let res = client()
        .post(server.at("/login"))
        .header("cookie", cookie_header(&s.token))
        .form(&with_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let new = session_cookie(res.headers()).unwrap();
    assert_ne!(new, s.token);
    assert_eq!(status(&server, &s.token).await.0, 401);
    assert_eq!(status(&server, &new).await.0, 200);
}

#[tokio::test]
async fn refused_requests_do_not_count_as_activity() {
    let mut server = Server::start(&[
        ("TESSERA_IDLE_TIMEOUT", "10m"),
        ("TESSERA_TOUCH_STEP", "1m"),
    ]);
    let s = demo_login(&server).await;
    let before = status(&server, &s.token).await.1["idle_expires_at"].clone();
    server.advance(Duration::from_secs(5 * 60));
    // A wrong password at re-authentication: 401, deadline unchanged.
    let res = client()
        .post(server.at("/reauth"))
        .header("cookie", cookie_header(&s.token))
        .header("x-csrf-token", &s.csrf)
        .json(&json!({"password": "not-the-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(status(&server, &s.token).await.1["idle_expires_at"], before);
    // The control: a successful request past the touch step moves it.
    let res = client()
        .get(server.at("/sessions"))
        .header("cookie", cookie_header(&s.token))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_ne!(status(&server, &s.token).await.1["idle_expires_at"], before);
}

/// The device list's confirmation without JavaScript: `?confirm=HANDLE`
/// or `?confirm=others` opens the password form in the page for a device
/// of the user's; anything else (someone else's handle, markup, a
/// malformed or repeated parameter) shows the plain list, never an echo.
#[tokio::test]
async fn device_list_confirmation_in_the_page() {
    let server = Server::start(&[]);
    let a = demo_login(&server).await;
    let b = demo_login(&server).await;
    let page = |query: String| {
        let token = a.token.clone();
        let url = server.at(&format!("/sessions{query}"));
        async move {
            let res = client()
                .get(url)
                .header("cookie", cookie_header(&token))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };
    let (code, html) = page(format!("?confirm={}", b.handle)).await;
    assert_eq!(code, 200);
    assert!(
        html.contains(&format!(
            "action=\"/sessions/{}/revoke\" id=\"confirm-form\"",
            b.handle
        )),
        "{html}"
    );
    let (code, html) = page(String::from("?confirm=others")).await;
    assert_eq!(code, 200);
    assert!(
        html.contains("action=\"/sessions/revoke-others\" id=\"confirm-form\""),
        "{html}"
    );
    // Its own session is signed out with the plain sign-out button.
    let (_, html) = page(format!("?confirm={}", a.handle)).await;
    assert!(!html.contains("id=\"confirm-form\""), "{html}");
    for junk in [
        "?confirm=%3Cscript%3Ealert(1)%3C/script%3E",
        "?confirm=tsh_unknown",
        "?confirm=a&confirm=b",
        "?confirm=%ZZ&&=",
    ] {
        let (code, html) = page(junk.to_owned()).await;
        assert_eq!(code, 200, "{junk}");
        assert!(!html.contains("id=\"confirm-form\""), "{junk}: {html}");
        assert!(!html.contains("<script>alert"), "{junk}");
    }
    // Looking is not signing out: both sessions live.
    assert_eq!(status(&server, &a.token).await.0, 200);
    assert_eq!(status(&server, &b.token).await.0, 200);
}

/// An administrator's revocation by handle (`DELETE /v1/sessions/{handle}`)
/// shows in the security activity of the session's user, once.
#[tokio::test]
async fn revocation_by_handle_shows_in_the_security_activity() {
    let server = Server::start(&[]);
    let a = demo_login(&server).await;
    let b = demo_login(&server).await;
    let key = server.api_key();
    let res = client()
        .delete(server.at(&format!("/v1/sessions/{}", b.handle)))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(status(&server, &b.token).await.0, 401);
    let html = client()
        .get(server.at("/activity"))
        .header("cookie", cookie_header(&a.token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let admin = html
        .matches("Signed out by an administrator (1 device)")
        .count();
    let sign_ins = html
        .matches("<h2 class=\"event-what\">Signed in</h2>")
        .count();
    assert_eq!((admin, sign_ins), (1, 2), "{html}");
}
