//! Bearer sessions: accepted only where configured, exempt
//! from CSRF, never given cookies.

use tessera_axum::SessionConfig;

use crate::common::*;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn bearer_tokens_are_ignored_unless_accepted() {
    let app = TestApp::start().await;
    let token = app.login("alice").await;
    let r = app
        .client
        .get(app.url("/me"))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (401, "missing".to_owned()));
}

#[tokio::test]
async fn bearer_requests_are_authenticated_and_exempt_from_csrf() {
    let app = TestApp::start_with(SessionConfig::default().accept_bearer(true)).await;
    let token = app.login("alice").await;
    let r = app
        .client
        .get(app.url("/me"))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "alice");

    // No CSRF token, a cross-site marker: still accepted, since a browser
    // never attaches an Authorization header on its own.
    let r = app
        .client
        .post(app.url("/set/k/v"))
        .header("authorization", bearer(&token))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    let r = app.get("/get/k", Some(&token)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "v");
}

#[tokio::test]
async fn cookie_requests_are_still_guarded_where_bearer_is_accepted() {
    let app = TestApp::start_with(SessionConfig::default().accept_bearer(true)).await;
    let token = app.login("alice").await;
    let r = app
        .post("/set/k/v", Some(&token), None)
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (403, "csrf_token_missing".to_owned()));
    // A foreign bearer value (not a session token) does not exempt a
    // cookie request.
    let r = app
        .post("/set/k/v", Some(&token), None)
        .header("authorization", "Bearer eyJhbGciOiJFZERTQSJ9.e30.sig")
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (403, "csrf_token_missing".to_owned()));
}

#[tokio::test]
async fn bearer_requests_never_get_cookies() {
    let app = TestApp::start_with(SessionConfig::default().accept_bearer(true)).await;
    let token = app.login("alice").await;
    for path in ["/rotate", "/logout"] {
        let token = if path == "/logout" {
            app.login("alice").await
        } else {
            token.clone()
        };
        let r = app
            .client
            .post(app.url(path))
            .header("authorization", bearer(&token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers().get("set-cookie").is_none(), "{path}");
        assert!(r.headers().get("clear-site-data").is_none(), "{path}");
    }
}

#[tokio::test]
async fn a_malformed_bearer_token_costs_no_store_call() {
    let app = TestApp::start_with(SessionConfig::default().accept_bearer(true)).await;
    app.counting.reset();
    let r = app
        .client
        .get(app.url("/me"))
        .header("authorization", "Bearer tss_not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (401, "missing".to_owned()));
    assert_eq!(app.counting.counts().total, 0);
}
