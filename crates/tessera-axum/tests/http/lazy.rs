//! Lazy loading, the touch policy and expiry (docs/design.md, invariants 1, 3, 4).

use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn a_handler_that_never_touches_the_session_makes_no_store_call() {
    let app = TestApp::start().await;
    let token = app.login("alice").await;
    app.counting.reset();
    for path in ["/noop", "/untouched"] {
        let r = app.get(path, Some(&token)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("set-cookie").is_none());
    }
    assert_eq!(app.counting.counts().total, 0);
}

#[tokio::test]
async fn malformed_oversized_and_empty_tokens_make_no_store_call() {
    let app = TestApp::start().await;
    let valid = app.login("alice").await;
    let mut truncated = valid.clone();
    truncated.pop();
    let mut flipped = valid.into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let oversized = format!("tss_{}", "A".repeat(4000));
    app.counting.reset();
    for bad in [
        "", "tss_", "garbage", &truncated, &flipped, &oversized, "tss_!!!!",
    ] {
        let r = app.get("/whoami", Some(bad)).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "ended:missing", "{bad}");
        let r = app.get("/me", Some(bad)).send().await.unwrap();
        assert_eq!(json_error(r).await, (401, "missing".to_owned()), "{bad}");
    }
    assert_eq!(app.counting.counts().total, 0);
}

#[tokio::test]
async fn a_read_inside_the_touch_step_writes_nothing_and_past_it_writes_once() {
    let app = TestApp::start().await;
    let token = app.login("alice").await;
    app.counting.reset();

    app.clock.advance(Duration::from_secs(30));
    let r = app.get("/me", Some(&token)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(app.counting.counts().writes, 0, "inside the touch step");

    app.clock.advance(Duration::from_secs(90));
    let r = app.get("/me", Some(&token)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.counting.counts().writes, 1, "past the touch step");

    let r = app.get("/me", Some(&token)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.counting.counts().writes, 1, "the deadline just moved");
}

#[tokio::test]
async fn a_status_query_never_moves_the_idle_deadline() {
    let app = TestApp::start().await;
    let token = app.login("alice").await;
    let idle_deadline = (START + 30 * 60 * 1000).to_string();
    app.counting.reset();
    for _ in 0..5 {
        app.clock.advance(Duration::from_secs(5 * 60));
        let r = app.get("/status", Some(&token)).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), idle_deadline);
    }
    assert_eq!(app.counting.counts().writes, 0);
    // 25 minutes of polling later, 6 more minutes of nothing end the session:
    // the polling did not keep it alive.
    app.clock.advance(Duration::from_secs(6 * 60));
    let r = app.get("/me", Some(&token)).send().await.unwrap();
    assert_eq!(json_error(r).await, (401, "expired_idle".to_owned()));
}

#[tokio::test]
async fn activity_keeps_a_session_alive_where_polling_does_not() {
    // The control for the test above: the same timeline with real requests.
    let app = TestApp::start().await;
    let token = app.login("alice").await;
    for _ in 0..5 {
        app.clock.advance(Duration::from_secs(5 * 60));
        assert_eq!(
            app.get("/me", Some(&token)).send().await.unwrap().status(),
            200
        );
    }
    app.clock.advance(Duration::from_secs(6 * 60));
    assert_eq!(
        app.get("/me", Some(&token)).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn idle_expiry_is_reported_to_the_handler_and_the_client() {
    let app = TestApp::start().await;
    let a = app.login("alice").await;
    let b = app.login("bob").await;
    app.clock.advance(Duration::from_secs(31 * 60));
    let r = app.get("/me", Some(&a)).send().await.unwrap();
    assert!(
        set_cookies(r.headers())
            .pop()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(json_error(r).await, (401, "expired_idle".to_owned()));
    let r = app.get("/whoami", Some(&b)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ended:expired_idle");
}

#[tokio::test]
async fn absolute_expiry_ends_an_active_session() {
    let app = TestApp::start().await;
    let a = app.login("alice").await;
    let b = app.login("bob").await;
    // Active every 20 minutes for 12 hours.
    for _ in 0..35 {
        app.clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(app.get("/me", Some(&a)).send().await.unwrap().status(), 200);
        assert_eq!(app.get("/me", Some(&b)).send().await.unwrap().status(), 200);
    }
    app.clock.advance(Duration::from_secs(20 * 60));
    let r = app.get("/me", Some(&a)).send().await.unwrap();
    assert_eq!(json_error(r).await, (401, "expired_absolute".to_owned()));
    let r = app.get("/whoami", Some(&b)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ended:expired_absolute");
}
