//! Start-up and operations: defaults that follow other settings, unknown
//! variables, `/metrics` access, HSTS and the first-start demo user.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use serde_json::json;

use crate::common::{
    METRICS_TOKEN, Server, client, cookie_header, demo_login, get, run_cli, status,
};

#[tokio::test]
async fn a_short_idle_timeout_alone_starts_and_the_touch_step_follows_it() {
    // Refused before: the default 60 s touch step was longer than 25 s.
    let mut server = Server::start(&[("TESSERA_IDLE_TIMEOUT", "25s")]);
    let s = demo_login(&server).await;
    let before = status(&server, &s.token).await.1["idle_expires_at"].clone();
    // Past the derived step (2.5 s), far below the old fixed one (60 s).
    server.advance(Duration::from_secs(3));
    let res = client()
        .get(server.at("/sessions"))
        .header("cookie", cookie_header(&s.token))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let after = status(&server, &s.token).await.1["idle_expires_at"].clone();
    assert_ne!(after, before, "activity past the step was written back");
}

#[tokio::test]
async fn an_unknown_tessera_variable_is_reported_at_start_up() {
    let server = Server::start(&[("TESSERA_IDEL_TIMEOUT", "5m")]);
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("TESSERA_IDEL_TIMEOUT"))
        .unwrap_or_else(|| panic!("not reported: {logs}"));
    assert!(line.contains("TESSERA_IDLE_TIMEOUT"), "{line}");
    assert!(line.contains("\"level\":\"WARN\""), "{line}");
    // Known variables are not reported.
    assert!(!logs.contains("TESSERA_INSECURE_HTTP"), "{logs}");
}

#[tokio::test]
async fn metrics_are_not_served_without_a_token_or_their_own_listener() {
    let server = Server::start(&[("TESSERA_METRICS_TOKEN", "")]);
    let res = get(&server, "/metrics").await;
    assert_eq!(res.status(), 404);
    assert!(!res.text().await.unwrap().contains("tessera_"));
    assert!(server.logs().contains("metrics are off"));
}

#[tokio::test]
async fn metrics_need_the_bearer_token() {
    let server = Server::start(&[]);
    let url = server.at("/metrics");
    for auth in [None, Some("Bearer wrong"), Some("Basic dGVzdA==")] {
        let mut rb = client().get(&url);
        if let Some(a) = auth {
            rb = rb.header("authorization", a);
        }
        let res = rb.send().await.unwrap();
        assert_eq!(res.status(), 401, "{auth:?}");
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        assert!(!res.text().await.unwrap().contains("tessera_"));
    }
    let res = client()
        .get(&url)
        .header("authorization", format!("bearer {METRICS_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("tessera_"));
    // The token never reaches the log.
    assert!(!server.logs().contains(METRICS_TOKEN));
}

#[tokio::test]
async fn metrics_can_live_on_their_own_listener() {
    let server = Server::start(&[
        ("TESSERA_METRICS_TOKEN", ""),
        ("TESSERA_METRICS_LISTEN", "127.0.0.1:0"),
    ]);
    let metrics_url = server.metrics_url.clone().expect("metrics address printed");
    assert_ne!(metrics_url, server.at("/metrics"));
    let res = client().get(&metrics_url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("tessera_"));
    // Only /metrics there; and not on the public listener.
    let other = metrics_url.replace("/metrics", "/healthz");
    assert_eq!(client().get(&other).send().await.unwrap().status(), 404);
    assert_eq!(get(&server, "/metrics").await.status(), 404);
    // With a token, the metrics listener asks for it too.
    let server = Server::start(&[("TESSERA_METRICS_LISTEN", "127.0.0.1:0")]);
    let metrics_url = server.metrics_url.clone().unwrap();
    assert_eq!(
        client().get(&metrics_url).send().await.unwrap().status(),
        401
    );
    let res = client()
        .get(&metrics_url)
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_short_metrics_token_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("t.db").display());
    let (ok, _, err) = crate::common::run_cli_with(
        &store,
        &["serve", "--listen", "127.0.0.1:0"],
        None,
        &[("TESSERA_METRICS_TOKEN", "short")],
    );
    assert!(!ok);
    assert!(err.contains("metrics_token"), "{err}");
}

#[tokio::test]
async fn every_response_carries_hsts_unless_insecure_http() {
    let server = Server::start(&[("TESSERA_INSECURE_HTTP", "false")]);
    let hsts = |res: &reqwest::Response| {
        res.headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let year = Some("max-age=31536000; includeSubDomains".to_owned());
    for path in [
        "/healthz",
        "/login",
        "/no-such-route",
        "/.well-known/jwks.json",
        "/metrics",
    ] {
        let res = get(&server, path).await;
        assert_eq!(hsts(&res), year, "{path}");
    }
    // A refusal made by the listener itself (413 before the body).
    let res = client()
        .post(server.at("/login"))
        .header("content-type", "application/json")
        .body(vec![b'x'; 128 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(hsts(&res), year);

    let server = Server::start(&[
        ("TESSERA_INSECURE_HTTP", "false"),
        ("TESSERA_HSTS_MAX_AGE", "1h"),
    ]);
    let res = get(&server, "/healthz").await;
    assert_eq!(
        hsts(&res).as_deref(),
        Some("max-age=3600; includeSubDomains")
    );
    // Plain-HTTP development mode (the test default): none.
    let server = Server::start(&[]);
    assert_eq!(hsts(&get(&server, "/healthz").await), None);
}

#[tokio::test]
async fn the_demo_password_goes_to_a_private_file_not_to_the_log() {
    // The default place: beside the SQLite database.
    let server = Server::start(&[("TESSERA_DEMO_PASSWORD_FILE", "")]);
    let password = server.demo_password.clone().expect("demo user created");
    let file = server.dir.path().join("tessera-demo-password");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    let logs = server.logs();
    assert!(!logs.contains(&password), "password in the log");
    assert!(
        logs.contains("tessera-demo-password"),
        "path not logged: {logs}"
    );
    demo_login(&server).await;
    // Written once: a restart with users present leaves it alone.
    std::fs::remove_file(&file).unwrap();
    let server = Server::start_in(server.stop(), &[]);
    assert!(server.demo_password.is_none());
    assert!(!file.exists());
}

#[tokio::test]
async fn demo_user_false_creates_no_user() {
    let server = Server::start(&[("TESSERA_DEMO_USER", "false")]);
    assert!(server.demo_password.is_none());
    assert!(!server.dir.path().join("tessera-demo-password").exists());
    let res = client()
        .post(server.at("/login"))
        .json(&json!({"username": "demo", "password": "anything"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let (ok, out, err) = run_cli(&server.store_url(), &["user", "list"], None);
    assert!(ok, "{err}");
    assert!(!out.contains("demo"), "{out}");
}

/// The audit counters of `/metrics` count every lifecycle event whatever
/// the log filter: here the log is off (`TESSERA_LOG_FILTER=off`), and a
/// session created and one revoked through `/v1` are still counted, while
/// nothing reaches the log.
#[tokio::test]
async fn audit_counters_count_with_the_log_off() {
    let server = Server::start(&[("TESSERA_LOG_FILTER", "off")]);
    let key = server.api_key();
    let created = crate::common::create_session(&server, &key, "hal").await;
    let handle = created["handle"].as_str().unwrap().to_owned();
    let res = client()
        .delete(server.at(&format!("/v1/sessions/{handle}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let text = crate::common::get_text(&server, "/metrics").await;
    assert!(text.contains("tessera_sessions_created_total 1"), "{text}");
    assert!(text.contains("tessera_sessions_revoked_total 1"), "{text}");
    let logs = server.logs();
    assert!(!logs.contains("\"event\":\"created\""), "{logs}");
}
