//! Cookie attributes (docs/design.md, invariant 6).

use std::time::Duration;

use tessera::cookie::{CookieConfig, SameSitePolicy};
use tessera_axum::SessionConfig;

use crate::common::*;

#[tokio::test]
async fn sign_in_cookie_has_the_secure_defaults() {
    let app = TestApp::start().await;
    let r = app.post("/login/alice", None, None).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let cookies = set_cookies(r.headers());
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let c = &cookies[0];
    assert!(c.starts_with("__Host-session=tss_"), "{c}");
    assert_eq!(attribute(c, "path").as_deref(), Some("/"));
    assert!(attribute(c, "secure").is_some(), "{c}");
    assert!(attribute(c, "httponly").is_some(), "{c}");
    assert_eq!(attribute(c, "samesite").as_deref(), Some("Strict"));
    assert_eq!(attribute(c, "domain"), None);
    // The manual clock has not moved: the full absolute lifetime remains.
    assert_eq!(attribute(c, "max-age").as_deref(), Some("43200"));
}

#[tokio::test]
async fn max_age_is_the_remaining_absolute_lifetime_after_rotation() {
    let app = TestApp::start().await;
    let token = app.login("alice").await;
    let csrf = app.csrf(&token).await;
    // An hour of activity (the idle timeout is 30 minutes).
    for _ in 0..3 {
        app.clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(
            app.get("/me", Some(&token)).send().await.unwrap().status(),
            200
        );
    }
    let r = app
        .post("/rotate", Some(&token), Some(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let c = set_cookies(r.headers()).pop().unwrap();
    assert_eq!(attribute(&c, "max-age").as_deref(), Some("39600"), "{c}");
}

#[tokio::test]
async fn a_domain_switches_to_the_secure_prefix() {
    let config =
        SessionConfig::default().with_cookie(CookieConfig::default().with_domain("example.test"));
    let app = TestApp::start_with(config).await;
    let r = app.post("/login/alice", None, None).send().await.unwrap();
    let c = set_cookies(r.headers()).pop().unwrap();
    assert!(c.starts_with("__Secure-session=tss_"), "{c}");
    assert_eq!(attribute(&c, "domain").as_deref(), Some("example.test"));
    assert!(attribute(&c, "secure").is_some());
    // And the layer reads the cookie back under that name.
    let token = session_token(r.headers(), "__Secure-session").unwrap();
    let r = app.get("/me", Some(&token)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "alice");
}

#[tokio::test]
async fn lax_only_when_configured() {
    let config = SessionConfig::default()
        .with_cookie(CookieConfig::default().with_same_site(SameSitePolicy::Lax));
    let app = TestApp::start_with(config).await;
    let r = app.post("/login/alice", None, None).send().await.unwrap();
    let c = set_cookies(r.headers()).pop().unwrap();
    assert_eq!(attribute(&c, "samesite").as_deref(), Some("Lax"));
    assert!(c.starts_with("__Host-session="));
}

#[tokio::test]
async fn insecure_development_mode_only_when_configured_and_logged() {
    let config = SessionConfig::default().with_cookie(CookieConfig::default().insecure_http(true));
    let app = TestApp::start_with(config).await;
    assert!(logged("plain-HTTP development mode"));
    let r = app.post("/login/alice", None, None).send().await.unwrap();
    let c = set_cookies(r.headers()).pop().unwrap();
    assert!(c.starts_with("session=tss_"), "{c}");
    assert!(attribute(&c, "secure").is_none(), "{c}");
    assert!(attribute(&c, "httponly").is_some(), "{c}");
    assert_eq!(attribute(&c, "samesite").as_deref(), Some("Strict"));
}

#[tokio::test]
async fn client_metadata_is_recorded_for_the_device_list() {
    let app = TestApp::start().await;
    let r = app
        .post("/login/alice", None, None)
        .header("user-agent", "test-browser/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sessions = app.manager.list_user("alice").await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        sessions[0].client.user_agent.as_deref(),
        Some("test-browser/1.0")
    );
    assert_eq!(
        sessions[0].client.ip,
        Some(std::net::IpAddr::from([127, 0, 0, 1]))
    );
}
