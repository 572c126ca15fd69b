//! The CSRF guard (docs/design.md, invariant 7). Every rejection is
//! also checked to change nothing in the store.

use tessera_axum::SessionConfig;

use crate::common::*;

const FORM: &str = "application/x-www-form-urlencoded";

/// Signs alice in and sets `k=before`; returns (token, csrf).
async fn alice(app: &TestApp) -> (String, String) {
    let token = app.login("alice").await;
    let csrf = app.csrf(&token).await;
    let r = app
        .post("/set/k/before", Some(&token), Some(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    (token, csrf)
}

/// Asserts that `k` is still `before` and that nothing was written since
/// the last reset.
async fn unchanged(app: &TestApp, token: &str) {
    assert_eq!(
        app.counting.counts().writes,
        0,
        "a rejected request wrote to the store"
    );
    let r = app.get("/get/k", Some(token)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "before");
}

#[tokio::test]
async fn a_missing_token_is_refused() {
    let app = TestApp::start().await;
    let (token, _) = alice(&app).await;
    app.counting.reset();
    let r = app
        .post("/set/k/after", Some(&token), None)
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (403, "csrf_token_missing".to_owned()));
    unchanged(&app, &token).await;
    assert!(logged("csrf_rejected"), "an audit event is emitted");
}

#[tokio::test]
async fn another_sessions_token_is_refused() {
    let app = TestApp::start().await;
    let (token, _) = alice(&app).await;
    let bob = app.login("bob").await;
    let bobs_csrf = app.csrf(&bob).await;
    app.counting.reset();
    let r = app
        .post("/set/k/after", Some(&token), Some(&bobs_csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (403, "csrf_token_invalid".to_owned()));
    let r = app
        .post("/set/k/after", Some(&token), Some("junk"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (403, "csrf_token_invalid".to_owned()));
    unchanged(&app, &token).await;
}

#[tokio::test]
async fn a_valid_header_token_passes_and_masks_differ_per_render() {
    let app = TestApp::start().await;
    let (token, csrf) = alice(&app).await;
    let other_render = app.csrf(&token).await;
    assert_ne!(csrf, other_render, "masked per render (BREACH)");
    let r = app
        .post("/set/k/after", Some(&token), Some(&other_render))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app.get("/get/k", Some(&token)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "after");
}

#[tokio::test]
async fn a_form_field_token_passes_and_the_body_reaches_the_handler() {
    let app = TestApp::start().await;
    let (token, csrf) = alice(&app).await;
    let body = format!("note=hello+world&csrf_token={csrf}&x=%26");
    let r = app
        .post("/echo", Some(&token), None)
        .header("content-type", FORM)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        body,
        "the handler sees the same bytes"
    );

    let r = app
        .post("/echo", Some(&token), None)
        .header("content-type", FORM)
        .body("note=hi&csrf_token=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (403, "csrf_token_invalid".to_owned()));
}

#[tokio::test]
async fn an_oversized_form_is_refused_before_the_handler() {
    let app = TestApp::start_with(SessionConfig::default().with_csrf_form_limit(1024)).await;
    let (token, csrf) = alice(&app).await;
    let body = format!("csrf_token={csrf}&pad={}", "a".repeat(2048));
    let r = app
        .post("/echo", Some(&token), None)
        .header("content-type", FORM)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (413, "csrf_form_too_large".to_owned()));
}

#[tokio::test]
async fn cross_site_is_refused_even_with_a_valid_token() {
    let app = TestApp::start().await;
    let (token, csrf) = alice(&app).await;
    app.counting.reset();
    let r = app
        .raw_post("/set/k/after", Some(&token))
        .header("sec-fetch-site", "cross-site")
        .header("origin", "https://evil.test")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (403, "cross_site".to_owned()));
    unchanged(&app, &token).await;
}

#[tokio::test]
async fn same_site_is_refused_unless_trusted() {
    let config = SessionConfig::default().with_trusted_origins(["https://admin.example.test"]);
    let app = TestApp::start_with(config).await;
    let (token, csrf) = alice(&app).await;
    app.counting.reset();
    let r = app
        .raw_post("/set/k/after", Some(&token))
        .header("sec-fetch-site", "same-site")
        .header("origin", "https://blog.example.test")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (403, "untrusted_same_site".to_owned()));
    unchanged(&app, &token).await;

    let r = app
        .raw_post("/set/k/after", Some(&token))
        .header("sec-fetch-site", "same-site")
        .header("origin", "https://admin.example.test")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_foreign_origin_is_refused_without_fetch_metadata() {
    let app = TestApp::start().await;
    let (token, csrf) = alice(&app).await;
    app.counting.reset();
    for origin in ["https://evil.test", "null"] {
        let r = app
            .raw_post("/set/k/after", Some(&token))
            .header("origin", origin)
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(
            json_error(r).await,
            (403, "foreign_origin".to_owned()),
            "{origin}"
        );
    }
    unchanged(&app, &token).await;
}

#[tokio::test]
async fn with_neither_header_the_token_decides() {
    let app = TestApp::start().await;
    let (token, csrf) = alice(&app).await;
    app.counting.reset();
    let r = app
        .raw_post("/set/k/after", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (403, "csrf_token_missing".to_owned()));
    unchanged(&app, &token).await;
    let r = app
        .raw_post("/set/k/after", Some(&token))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn login_csrf_is_refused() {
    let app = TestApp::start().await;
    let r = app
        .raw_post("/login/mallory", None)
        .header("sec-fetch-site", "cross-site")
        .header("origin", "https://evil.test")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(json_error(r).await, (403, "cross_site".to_owned()));
    let r = app
        .raw_post("/login/mallory", None)
        .header("origin", "https://evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (403, "foreign_origin".to_owned()));
    assert_eq!(app.counting.counts().total, 0, "no session was created");
    assert!(app.manager.list_user("mallory").await.unwrap().is_empty());
}

#[tokio::test]
async fn safe_methods_are_not_guarded() {
    let app = TestApp::start().await;
    let (token, _) = alice(&app).await;
    let r = app
        .get("/me", Some(&token))
        .header("sec-fetch-site", "cross-site")
        .header("origin", "https://evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_expired_cookie_does_not_block_signing_in_again() {
    let app = TestApp::start().await;
    let token = app.login("alice").await;
    app.manager
        .revoke_user("alice", None, tessera::Revocation::Other)
        .await
        .unwrap();
    // The browser still holds the dead cookie and has no CSRF token.
    let r = app
        .post("/login/alice", Some(&token), None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(session_token(r.headers(), app.cookie.name()).is_some());
}

#[tokio::test]
async fn rejections_are_text_for_clients_that_do_not_accept_json() {
    let app = TestApp::start().await;
    let (token, _) = alice(&app).await;
    let browser = reqwest::Client::new();
    let cookie = format!("{}={token}", app.cookie.name());
    let r = browser
        .post(app.url("/set/k/after"))
        .header("cookie", &cookie)
        .header("accept", "text/html,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        r.text().await.unwrap(),
        "csrf_rejected: csrf_token_missing\n"
    );
    // A rejection made by an extractor inside the handler is re-rendered too.
    let r = browser
        .get(app.url("/me"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), "unauthenticated: missing\n");
}
