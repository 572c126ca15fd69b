//! What a request records about the session: refused requests are not
//! activity, and the client IP can come from a trusted-proxy middleware.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use tessera::SessionManager;
use tessera::store::MemoryStore;
use tessera::time::{ManualClock, Timestamp};
use tessera_axum::{ClientIp, SessionConfig, SessionLayer, SessionRejection};

use crate::common::{START, TestApp, client, policy, routes, serve, session_token};

#[tokio::test]
async fn a_refused_request_does_not_move_the_idle_deadline() {
    let app = TestApp::start().await;
    let token = app.login("alice").await;
    app.counting.reset();

    // Past the touch step a successful read would write; a refused one must
    // not.
    app.clock.advance(Duration::from_secs(5 * 60));
    let r = app.get("/refuse", Some(&token)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(app.counting.counts().writes, 0, "refused: no touch");
    let idle = app.get("/status", Some(&token)).send().await.unwrap();
    assert_eq!(
        idle.text().await.unwrap(),
        (START + 30 * 60 * 1000).to_string(),
        "idle deadline unchanged"
    );

    // The control: the same read answered 200 does count.
    let r = app.get("/me", Some(&token)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.counting.counts().writes, 1, "activity touches");
}

async fn insert_client_ip(mut req: Request, next: Next) -> Response {
    req.extensions_mut()
        .insert(ClientIp(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))));
    next.run(req).await
}

#[tokio::test]
async fn the_client_ip_extension_replaces_the_socket_peer() {
    for with_extension in [false, true] {
        let manager = SessionManager::builder(MemoryStore::new())
            .policy(policy())
            .clock(ManualClock::new(Timestamp::from_millis(START)))
            .build()
            .unwrap();
        let config = SessionConfig::default();
        let name = config.cookie().name().to_owned();
        let app = routes().layer(SessionLayer::with_config(manager, config));
        let app = if with_extension {
            app.layer(middleware::from_fn(insert_client_ip))
        } else {
            app
        };
        let base = serve(app).await;
        let r = client()
            .post(format!("{base}/login/alice"))
            .header("sec-fetch-site", "same-origin")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let token = session_token(r.headers(), &name).unwrap();
        let ip = client()
            .get(format!("{base}/client-ip"))
            .header("cookie", format!("{name}={token}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let expected = if with_extension {
            "203.0.113.9"
        } else {
            "127.0.0.1"
        };
        assert_eq!(ip, expected);
    }
}

#[tokio::test]
async fn rejections_rendered_by_the_layer_can_be_recognised() {
    use axum::body::Body;
    use tower::ServiceExt as _;

    let app = TestApp::start().await;
    let token = app.login("alice").await;
    let cookie = format!("{}={token}", app.cookie.name());
    let router = routes().layer(SessionLayer::new(app.manager.clone()));

    // The guard's refusal carries its rejection…
    let forged = http::Request::post("/logout")
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-origin")
        .body(Body::empty())
        .unwrap();
    let r = router.clone().oneshot(forged).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        SessionRejection::of(&r),
        Some(SessionRejection::Csrf(
            tessera::csrf::CsrfRejection::MissingToken
        ))
    );
    // …a handler's own refusal does not, nor does a success.
    for path in ["/refuse", "/me"] {
        let req = http::Request::get(path)
            .header("cookie", &cookie)
            .body(Body::empty())
            .unwrap();
        let r = router.clone().oneshot(req).await.unwrap();
        assert_eq!(SessionRejection::of(&r), None, "{path}");
    }
}
