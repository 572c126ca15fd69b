//! Start-up: defaults that follow other settings, unknown variables.

use std::time::Duration;

use crate::common::{Server, client, cookie_header, demo_login, status};

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
