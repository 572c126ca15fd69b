//! Rotation, sign-in and sign-out through HTTP (docs/design.md, invariant 5).

use tessera::token::SessionToken;
use tessera_axum::SessionConfig;

use crate::common::*;

#[tokio::test]
async fn rotated_token_is_refused_data_kept_and_csrf_token_changes() {
    let app = TestApp::start().await;
    let old = app.login("alice").await;
    let old_csrf = app.csrf(&old).await;
    let r = app
        .post("/set/theme/dark", Some(&old), Some(&old_csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = app
        .post("/rotate", Some(&old), Some(&old_csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let new = session_token(r.headers(), app.cookie.name()).unwrap();
    assert_ne!(new, old);

    // The old token is dead at once.
    let r = app.get("/me", Some(&old)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The data moved with the session.
    let r = app.get("/get/theme", Some(&new)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "dark");
    // The CSRF token of the old token no longer works with the new one.
    let r = app
        .post("/set/theme/light", Some(&new), Some(&old_csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r).await, (403, "csrf_token_invalid".to_owned()));
    let new_csrf = app.csrf(&new).await;
    let r = app
        .post("/set/theme/light", Some(&new), Some(&new_csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn login_replaces_any_presented_token() {
    let app = TestApp::start().await;
    // An anonymous session (say, a cart) exists first.
    let r = app.post("/set/cart/3", None, None).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let anon = session_token(r.headers(), app.cookie.name()).unwrap();
    let csrf = app.csrf(&anon).await;

    let r = app
        .post("/login/alice", Some(&anon), Some(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let signed_in = session_token(r.headers(), app.cookie.name()).unwrap();
    assert_ne!(signed_in, anon, "sign-in must issue a new token (fixation)");
    let r = app.get("/whoami", Some(&anon)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ended:missing");
    let r = app.get("/get/cart", Some(&signed_in)).send().await.unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "3",
        "the anonymous cart survives sign-in"
    );
}

#[tokio::test]
async fn logout_deletes_the_record_and_clears_the_cookie() {
    let app = TestApp::start().await;
    let token = app.login("alice").await;
    let csrf = app.csrf(&token).await;
    let hash = SessionToken::parse(&token).unwrap().hash();
    assert!(app.store().load(&hash).await.unwrap().is_some());

    let r = app
        .post("/logout", Some(&token), Some(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["clear-site-data"], "\"cookies\"");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let c = set_cookies(r.headers()).pop().unwrap();
    assert!(c.starts_with("__Host-session=;"), "{c}");
    assert_eq!(attribute(&c, "max-age").as_deref(), Some("0"));
    assert_eq!(attribute(&c, "path").as_deref(), Some("/"));
    assert!(attribute(&c, "secure").is_some());
    assert!(attribute(&c, "httponly").is_some());
    assert_eq!(attribute(&c, "samesite").as_deref(), Some("Strict"));
    assert_eq!(attribute(&c, "domain"), None);
    assert_eq!(r.text().await.unwrap(), "true");

    assert!(
        app.store().load(&hash).await.unwrap().is_none(),
        "record deleted"
    );
    assert!(app.manager.list_user("alice").await.unwrap().is_empty());
    let r = app.get("/me", Some(&token)).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn clear_site_data_can_be_turned_off() {
    let app = TestApp::start_with(SessionConfig::default().clear_site_data_on_logout(false)).await;
    let token = app.login("alice").await;
    let csrf = app.csrf(&token).await;
    let r = app
        .post("/logout", Some(&token), Some(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("clear-site-data").is_none());
    assert!(
        set_cookies(r.headers())
            .pop()
            .unwrap()
            .contains("Max-Age=0")
    );
}

#[tokio::test]
async fn a_dead_cookie_is_cleared_without_clear_site_data() {
    let app = TestApp::start().await;
    let token = app.login("alice").await;
    app.manager
        .revoke_user("alice", None, tessera::Revocation::Other)
        .await
        .unwrap();
    let r = app.get("/whoami", Some(&token)).send().await.unwrap();
    assert!(r.headers().get("clear-site-data").is_none());
    let c = set_cookies(r.headers()).pop().unwrap();
    assert!(c.contains("Max-Age=0"), "{c}");
    // The tombstone tells the handler why the session ended.
    assert_eq!(r.text().await.unwrap(), "ended:revoked");
}
