//! Store failures fail closed with 503, are logged, and the service
//! recovers by itself (docs/design.md, invariant 9); duplicate
//! cookies never select the attacker's session.

use tessera_axum::SessionConfig;

use crate::common::*;

#[tokio::test]
async fn a_failing_store_yields_503_never_401_or_200_and_recovers() {
    let app = TestApp::start().await;
    let token = app.login("alice").await;
    let csrf = app.csrf(&token).await;

    app.failing.set_failing(true);
    for path in ["/me", "/whoami", "/get/k", "/csrf"] {
        let r = app.get(path, Some(&token)).send().await.unwrap();
        assert!(r.headers().get("set-cookie").is_none(), "{path}");
        assert_eq!(
            json_error(r).await,
            (503, "session_store".to_owned()),
            "{path}"
        );
    }
    // The guard needs the store to verify the token: 503, not 403 or 200.
    let r = app
        .post("/set/k/v", Some(&token), Some(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (503, "session_store".to_owned()));
    // A sign-in that cannot be stored sets no cookie.
    let r = app.post("/login/bob", None, None).send().await.unwrap();
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(r.status(), 503);
    // Routes that do not need the session keep working.
    assert_eq!(
        app.get("/noop", Some(&token))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(logged("session store failure"));

    app.failing.set_failing(false);
    let r = app.get("/me", Some(&token)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "alice");
}

#[tokio::test]
async fn a_failed_commit_turns_the_response_into_503() {
    // A bearer request skips the guard, and `insert` only buffers: the
    // first store call is the commit, after the handler answered 200.
    let app = TestApp::start_with(SessionConfig::default().accept_bearer(true)).await;
    let token = app.login("alice").await;
    app.failing.set_failing(true);
    let r = app
        .client
        .post(app.url("/set/k/v"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (503, "session_store".to_owned()));
    assert!(logged("session commit failed"));
    app.failing.set_failing(false);
    let r = app.get("/get/k", Some(&token)).send().await.unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "",
        "the failed write did not happen"
    );
}

#[tokio::test]
async fn two_different_session_cookies_mean_no_session() {
    let app = TestApp::start().await;
    let victim = app.login("alice").await;
    let attacker = app.login("mallory").await;
    let name = app.cookie.name();
    for order in [[&victim, &attacker], [&attacker, &victim]] {
        // In one header, and in two headers.
        let one = format!("{name}={}; {name}={}", order[0], order[1]);
        let r = app
            .client
            .get(app.url("/me"))
            .header("cookie", &one)
            .send()
            .await
            .unwrap();
        assert_eq!(json_error(r).await, (401, "missing".to_owned()));
        let r = app
            .client
            .get(app.url("/whoami"))
            .header("cookie", format!("{name}={}", order[0]))
            .header("cookie", format!("{name}={}", order[1]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "ended:missing");
    }
    // The same token twice, or beside junk, is fine.
    let same = format!("{name}={victim}; other=1; {name}={victim}; {name}=junk");
    let r = app
        .client
        .get(app.url("/me"))
        .header("cookie", same)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "alice");
}

#[tokio::test]
async fn a_route_without_the_layer_is_a_clear_500() {
    let base = serve(routes()).await;
    let r = client().get(format!("{base}/me")).send().await.unwrap();
    assert_eq!(
        json_error(r).await,
        (500, "session_layer_missing".to_owned())
    );
    let _ = SessionConfig::default();
}

/// A session error the mapping does not classify as a statement about the
/// presented session (here `Unsupported`: a lifetime class the policy does
/// not offer) fails closed with 503 — never 401, never 200 — and writes
/// nothing.
#[tokio::test]
async fn an_unclassified_session_error_is_503_and_writes_nothing() {
    let app = TestApp::start().await;
    let before = app.counting.counts().writes;
    let r = app
        .post("/login-remember/alice", None, None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(json_error(r).await, (503, "session_store".to_owned()));
    assert_eq!(app.counting.counts().writes, before, "nothing written");
}
