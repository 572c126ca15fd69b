//! "Keep me signed in": the remember lifetime class, over real HTTP, with
//! the server's test clock.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, client, cookie_header, list_sessions, session_cookie, status};

const DAY: u64 = 24 * 3600;

/// Default class: 10 minutes idle, 1 hour absolute. Remember class: 1 day
/// idle, 30 days absolute.
fn remember_server() -> Server {
    Server::start(&[
        ("TESSERA_IDLE_TIMEOUT", "10m"),
        ("TESSERA_ABSOLUTE_TIMEOUT", "1h"),
        ("TESSERA_REMEMBER_IDLE_TIMEOUT", "1d"),
        ("TESSERA_REMEMBER_ABSOLUTE_TIMEOUT", "30d"),
    ])
}

/// The `Max-Age` of a `Set-Cookie` value, in seconds.
fn max_age(set_cookie: &str) -> u64 {
    set_cookie
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Max-Age="))
        .unwrap_or_else(|| panic!("no Max-Age in {set_cookie}"))
        .parse()
        .unwrap()
}

fn set_cookie(res: &reqwest::Response) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("session="))
        .expect("a session cookie")
        .to_owned()
}

/// JSON sign-in of the demo user; the response.
async fn json_sign_in(server: &Server, remember: Option<bool>) -> reqwest::Response {
    let mut body = json!({
        "username": "demo",
        "password": server.demo_password.as_deref().unwrap(),
    });
    if let Some(remember) = remember {
        body["remember"] = remember.into();
    }
    client()
        .post(server.at("/login"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Form sign-in of the demo user, with or without the checkbox ticked (a
/// browser sends the box's `value` only when it is ticked).
async fn form_sign_in(server: &Server, ticked: bool) -> reqwest::Response {
    let password = server.demo_password.clone().unwrap();
    let mut fields = vec![("username", "demo".to_owned()), ("password", password)];
    if ticked {
        fields.push(("remember", "true".to_owned()));
    }
    client()
        .post(server.at("/login"))
        .form(&fields)
        .send()
        .await
        .unwrap()
}

async fn call(server: &Server, key: &str, path: &str, body: Value) -> (u16, Value) {
    let res = client()
        .post(server.at(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = res.status().as_u16();
    (code, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn keep_me_signed_in_gives_the_remember_max_age_and_plain_sign_in_the_default() {
    let server = remember_server();
    let page = client()
        .get(server.at("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<label for=\"remember\"")
            && page.contains("id=\"remember\" name=\"remember\""),
        "{page}"
    );
    assert!(page.contains("Keep me signed in"), "{page}");
    // Unticked by default: the longer lifetime is the user's choice.
    assert!(!page.contains("checked"), "{page}");

    // The form, without and with the box ticked.
    let plain = form_sign_in(&server, false).await;
    assert_eq!(plain.status(), 303);
    assert_eq!(max_age(&set_cookie(&plain)), 3600);
    let ticked = form_sign_in(&server, true).await;
    assert_eq!(ticked.status(), 303);
    assert_eq!(max_age(&set_cookie(&ticked)), 30 * DAY);

    // JSON sign-in, without and with `remember: true`.
    for (remember, class, age) in [
        (None, "default", 3600),
        (Some(false), "default", 3600),
        (Some(true), "remember", 30 * DAY),
    ] {
        let res = json_sign_in(&server, remember).await;
        assert_eq!(res.status(), 200);
        assert_eq!(max_age(&set_cookie(&res)), age, "{remember:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["session_class"], class, "{body}");
    }

    // `POST /v1/sessions` and `POST /v1/requests/login` take it too.
    let key = server.api_key();
    let (code, created) = call(
        &server,
        &key,
        "/v1/sessions",
        json!({"user_id": "alice", "remember": true}),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["session_class"], "remember");
    let (code, plain) = call(&server, &key, "/v1/sessions", json!({"user_id": "alice"})).await;
    assert_eq!(code, 201, "{plain}");
    assert_eq!(plain["session_class"], "default");
    let remember_end = created["absolute_expires_at"].as_str().unwrap();
    let plain_end = plain["absolute_expires_at"].as_str().unwrap();
    assert!(remember_end > plain_end, "{remember_end} vs {plain_end}");
    let (code, verified) = call(
        &server,
        &key,
        "/v1/sessions/verify",
        json!({"token": created["token"]}),
    )
    .await;
    assert_eq!(code, 200, "{verified}");
    assert_eq!(verified["session_class"], "remember");

    let (code, installed) = call(
        &server,
        &key,
        "/v1/requests/login",
        json!({"user_id": "bob", "remember": true}),
    )
    .await;
    assert_eq!(code, 200, "{installed}");
    let cookie = installed["set_cookie"][0].as_str().unwrap();
    assert_eq!(max_age(cookie), 30 * DAY);
    // Signing in again on that session without `remember` makes it a
    // default-class session: the class is each sign-in's choice.
    let (code, again) = call(
        &server,
        &key,
        "/v1/requests/login",
        json!({"user_id": "bob", "token": installed["token"]}),
    )
    .await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(max_age(again["set_cookie"][0].as_str().unwrap()), 3600);
}

#[tokio::test]
async fn a_remember_session_outlives_the_default_idle_timeout_but_not_its_own() {
    let mut server = remember_server();
    let res = json_sign_in(&server, Some(true)).await;
    assert_eq!(res.status(), 200);
    let remembered = session_cookie(res.headers()).unwrap();
    let res = json_sign_in(&server, None).await;
    assert_eq!(res.status(), 200);
    let plain = session_cookie(res.headers()).unwrap();

    // Past the default idle timeout (10 minutes) without activity.
    server.advance(Duration::from_secs(30 * 60));
    let (code, body) = status(&server, &plain).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["reason"], "expired_idle", "{body}");
    let (code, body) = status(&server, &remembered).await;
    assert_eq!(code, 200, "{body}");

    // Activity moves its idle deadline by the remember idle timeout.
    let home = client()
        .get(server.at("/"))
        .header("cookie", cookie_header(&remembered))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 200);
    server.advance(Duration::from_secs(DAY - 60));
    assert_eq!(status(&server, &remembered).await.0, 200);

    // A day and more without activity: its own idle timeout ends it.
    server.advance(Duration::from_secs(2 * 60));
    let (code, body) = status(&server, &remembered).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["reason"], "expired_idle", "{body}");
}

#[tokio::test]
async fn remember_is_refused_with_400_and_creates_nothing_when_not_configured() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let page = client()
        .get(server.at("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("remember"), "{page}");

    // JSON and form sign-in: 400, no cookie, no session.
    let res = json_sign_in(&server, Some(true)).await;
    assert_eq!(res.status(), 400);
    assert!(session_cookie(res.headers()).is_none());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "remember_not_configured", "{body}");
    let res = form_sign_in(&server, true).await;
    assert_eq!(res.status(), 400);
    assert!(session_cookie(res.headers()).is_none());
    assert!(list_sessions(&server, &key, "demo").await.is_empty());

    // `POST /v1/sessions`: 400 and nothing stored.
    let (code, body) = call(
        &server,
        &key,
        "/v1/sessions",
        json!({"user_id": "alice", "remember": true}),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"], "remember_not_configured");
    assert!(list_sessions(&server, &key, "alice").await.is_empty());

    // `POST /v1/requests/login` presenting a live session: 400, and the
    // presented session is left exactly as it was.
    let (code, first) = call(
        &server,
        &key,
        "/v1/requests/login",
        json!({"user_id": "bob"}),
    )
    .await;
    assert_eq!(code, 200, "{first}");
    let token = first["token"].as_str().unwrap();
    let before = list_sessions(&server, &key, "bob").await;
    assert_eq!(before.len(), 1);
    let (code, body) = call(
        &server,
        &key,
        "/v1/requests/login",
        json!({"user_id": "bob", "token": token, "remember": true}),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"], "remember_not_configured");
    assert_eq!(list_sessions(&server, &key, "bob").await, before);
    let (code, verified) = call(
        &server,
        &key,
        "/v1/sessions/verify",
        json!({"token": token}),
    )
    .await;
    assert_eq!(code, 200, "{verified}");
    assert_eq!(verified["session_class"], "default");
}
