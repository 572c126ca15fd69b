//! The /v1 API, forward auth, ops endpoints and bad input.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    Server, client, cookie_header, delete_session, get, get_json, get_text, list_sessions,
};

async fn create(server: &Server, key: &str, body: Value) -> reqwest::Response {
    client()
        .post(server.at("/v1/sessions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn verify(server: &Server, key: &str, token: &str) -> (u16, Value) {
    let res = client()
        .post(server.at("/v1/sessions/verify"))
        .bearer_auth(key)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    let code = res.status().as_u16();
    (code, res.json().await.unwrap())
}

#[tokio::test]
async fn v1_requires_an_api_key() {
    let server = Server::start(&[]);
    let key = server.api_key();
    for auth in [
        None,
        Some("tsk_junk"),
        Some("Bearer"),
        Some("x".repeat(10_000).as_str()),
    ] {
        let mut req = client()
            .post(server.at("/v1/sessions"))
            .json(&json!({"user_id": "alice"}));
        if let Some(a) = auth {
            req = req.header("authorization", format!("Bearer {a}"));
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
    }
    assert!(
        list_sessions(&server, &key, "alice").await.is_empty(),
        "rejected requests created nothing"
    );

    // A revoked key stops working.
    let (ok, _, err) = server.cli(&["api-key", "revoke", "backend"], None);
    assert!(ok, "{err}");
    let res = create(&server, &key, json!({"user_id": "alice"})).await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn v1_session_lifecycle() {
    let server = Server::start(&[]);
    let key = server.api_key();

    let res = create(
        &server,
        &key,
        json!({"user_id": "alice", "data": {"cart": [1]}, "ip": "192.0.2.9", "user_agent": "curl"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tss_"));
    assert!(created["handle"].as_str().unwrap().starts_with("tsh_"));
    for field in ["csrf_token", "idle_expires_at", "absolute_expires_at"] {
        assert!(created[field].is_string(), "{field}");
    }

    let (code, v) = verify(&server, &key, &token).await;
    assert_eq!(code, 200);
    assert_eq!(v["user_id"], "alice");
    assert_eq!(v["data"]["cart"], json!([1]));
    assert_eq!(v["handle"], created["handle"]);

    // Rotate: the new token works, the old one is dead.
    let res = client()
        .post(server.at("/v1/sessions/rotate"))
        .bearer_auth(&key)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let rotated: Value = res.json().await.unwrap();
    let new_token = rotated["token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, token);
    assert_eq!(rotated["handle"], created["handle"]);
    let (code, v) = verify(&server, &key, &token).await;
    assert_eq!(code, 401);
    assert_eq!(v["reason"], "missing");
    assert_eq!(verify(&server, &key, &new_token).await.0, 200);

    // Listing shows it, with client metadata.
    let sessions = list_sessions(&server, &key, "alice").await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["ip"], "192.0.2.9");
    assert_eq!(sessions[0]["user_agent"], "curl");

    // Delete by handle.
    let handle = created["handle"].as_str().unwrap();
    let res = delete_session(&server, &key, handle).await;
    assert_eq!(res.status(), 204);
    assert_eq!(verify(&server, &key, &new_token).await.0, 401);
    let res = delete_session(&server, &key, handle).await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn client_ip_is_kept_as_an_address_and_other_text_is_not_kept() {
    let server = Server::start(&[]);
    let key = server.api_key();
    for (ip, listed) in [
        (json!("2001:DB8::9"), json!("2001:db8::9")),
        (json!("not an address"), Value::Null),
    ] {
        let res = create(&server, &key, json!({"user_id": "ip", "ip": ip})).await;
        assert_eq!(res.status(), 201, "{ip}");
        let handle = res.json::<Value>().await.unwrap()["handle"].clone();
        let sessions = list_sessions(&server, &key, "ip").await;
        let session = sessions.iter().find(|s| s["handle"] == handle).unwrap();
        assert_eq!(session["ip"], listed, "{ip}");
    }
}

#[tokio::test]
async fn concurrent_patches_lose_nothing() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let created: Value = create(&server, &key, json!({"user_id": "bob"}))
        .await
        .json()
        .await
        .unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let url = server.at("/v1/sessions/data");
        let key = key.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            client()
                .patch(url)
                .bearer_auth(key)
                .json(&json!({"token": token, "set": {format!("k{i}"): i}}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let res = client()
        .patch(server.at("/v1/sessions/data"))
        .bearer_auth(&key)
        .json(&json!({"token": token, "remove": ["k0"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, v) = verify(&server, &key, &token).await;
    let data = v["data"].as_object().unwrap();
    assert_eq!(data.len(), 19, "{data:?}");
    for i in 1..20 {
        assert_eq!(data[&format!("k{i}")], json!(i));
    }
}

#[tokio::test]
async fn revoke_all_of_a_user() {
    let server = Server::start(&[]);
    let key = server.api_key();
    for _ in 0..3 {
        assert_eq!(
            create(&server, &key, json!({"user_id": "carol"}))
                .await
                .status(),
            201
        );
    }
    create(&server, &key, json!({"user_id": "dave"})).await;
    let res = client()
        .delete(server.at("/v1/users/carol/sessions"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["revoked"], 3);
    assert!(list_sessions(&server, &key, "carol").await.is_empty());
    assert_eq!(list_sessions(&server, &key, "dave").await.len(), 1);
}

#[tokio::test]
async fn verify_reports_idle_and_absolute_expiry() {
    let mut server = Server::start(&[
        ("TESSERA_IDLE_TIMEOUT", "10m"),
        ("TESSERA_ABSOLUTE_TIMEOUT", "1h"),
        ("TESSERA_TOUCH_STEP", "0s"),
    ]);
    let key = server.api_key();
    let a: Value = create(&server, &key, json!({"user_id": "erin"}))
        .await
        .json()
        .await
        .unwrap();
    server.advance(Duration::from_secs(11 * 60));
    let (code, v) = verify(&server, &key, a["token"].as_str().unwrap()).await;
    assert_eq!((code, v["reason"].as_str()), (401, Some("expired_idle")));

    // Activity every 9 minutes keeps a session alive only up to the
    // absolute limit.
    let b: Value = create(&server, &key, json!({"user_id": "erin"}))
        .await
        .json()
        .await
        .unwrap();
    let token = b["token"].as_str().unwrap();
    for _ in 0..6 {
        server.advance(Duration::from_secs(9 * 60));
        assert_eq!(verify(&server, &key, token).await.0, 200);
    }
    server.advance(Duration::from_secs(9 * 60));
    let (code, v) = verify(&server, &key, token).await;
    assert_eq!(
        (code, v["reason"].as_str()),
        (401, Some("expired_absolute"))
    );
}

#[tokio::test]
async fn bad_input_gets_clear_4xx_and_changes_nothing() {
    let server = Server::start(&[("TESSERA_BODY_LIMIT", "1024")]);
    let key = server.api_key();
    let post = |path: &str, body: String| {
        client()
            .post(server.at(path))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
    };

    let res = post("/v1/sessions", "{\"user_id\": ".into())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_json");
    assert!(body["message"].as_str().unwrap().contains("EOF"), "{body}");

    let res = post("/v1/sessions", "{\"data\": {}}".into())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("user_id"),
        "{body}"
    );

    let big = format!(
        "{{\"user_id\": \"x\", \"data\": {{\"k\": \"{}\"}}}}",
        "a".repeat(4096)
    );
    let res = post("/v1/sessions", big).send().await.unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "payload_too_large"
    );

    for junk in ["", "tss_", "tss_AAAA", &"x".repeat(900), "tss_\u{1F600}"] {
        let body = json!({"token": junk}).to_string();
        let res = post("/v1/sessions/verify", body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{junk}");
        let res = post("/v1/sessions/rotate", body).send().await.unwrap();
        assert_eq!(res.status(), 401, "{junk}");
    }

    let res = client()
        .delete(server.at("/v1/sessions/..%2F..%2Fetc"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = get(&server, "/no/such/route").await;
    assert_eq!(res.status(), 404);

    // Nothing was created by any of it.
    let res = client()
        .get(server.at("/v1/users/x/sessions"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Vec<Value>>().await.unwrap().len(), 0);
}

#[tokio::test]
async fn forward_auth_reads_the_session_cookie() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let created: Value = create(&server, &key, json!({"user_id": "frank"}))
        .await
        .json()
        .await
        .unwrap();
    let token = created["token"].as_str().unwrap();

    let res = client()
        .get(server.at("/v1/auth/verify"))
        .header("cookie", cookie_header(token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tessera-user"], "frank");
    assert_eq!(
        res.headers()["x-tessera-session"],
        created["handle"].as_str().unwrap()
    );

    for cookie in [
        None,
        Some("session=junk".to_owned()),
        Some(format!("session={token}x")),
    ] {
        let mut req = client().get(server.at("/v1/auth/verify"));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401);
        assert!(res.headers().get("x-tessera-user").is_none());
    }
}

#[tokio::test]
async fn ops_endpoints() {
    let server = Server::start(&[]);
    let key = server.api_key();
    assert_eq!(get(&server, "/healthz").await.status(), 200);
    assert_eq!(get(&server, "/readyz").await.status(), 200);
    create(&server, &key, json!({"user_id": "gina"})).await;

    let text = get_text(&server, "/metrics").await;
    assert!(text.contains("tessera_sessions_created_total 1"), "{text}");
    for name in [
        "tessera_sessions_rotated_total",
        "tessera_sessions_destroyed_total",
        "tessera_sessions_expired_total",
        "tessera_sessions_revoked_total",
        "tessera_csrf_rejections_total",
        "tessera_login_failures_total",
        "tessera_store_latency_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }

    let doc: Value = get_json(&server, "/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/sessions",
        "/v1/sessions/verify",
        "/v1/sessions/rotate",
        "/v1/sessions/data",
        "/v1/sessions/{handle}",
        "/v1/users/{user_id}/sessions",
        "/v1/auth/verify",
        "/login",
        "/logout",
        "/session",
        "/session/keepalive",
        "/sessions",
        "/sessions/{handle}",
        "/sessions/revoke-others",
        "/reauth",
        "/account/password",
    ] {
        assert!(paths.contains_key(p), "{p} missing from OpenAPI");
    }
}

/// ASVS 5.0 V7.4.5, the global kill switch over `/v1`: every session that
/// existed before `DELETE /v1/sessions` is refused with `reason: "revoked"`
/// on every instance sharing the store, whoever holds it; a session created
/// afterwards works. Without an API key nothing changes.
///
/// The test servers' session clocks stand still until moved: a session
/// created in the kill switch's own millisecond is not "before" it, so the
/// clocks move on between the steps as real time does.
async fn everyone_is_signed_out(a: &mut Server, b: &mut Server, key: &str) {
    let mut before = Vec::new();
    for user in ["erin", "frank", "erin"] {
        let res = create(a, key, json!({"user_id": user})).await;
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        before.push(body["token"].as_str().unwrap().to_owned());
    }
    a.advance(Duration::from_secs(1));
    let refused = client().delete(a.at("/v1/sessions")).send().await.unwrap();
    assert_eq!(refused.status(), 401, "no API key, no kill switch");
    for token in &before {
        assert_eq!(verify(b, key, token).await.0, 200, "unchanged");
    }

    let res = client()
        .delete(a.at("/v1/sessions"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body["not_before"].as_str().is_some(), "{body}");
    for token in &before {
        for server in [&*a, &*b] {
            let (code, v) = verify(server, key, token).await;
            assert_eq!(
                (code, v["reason"].as_str(), v["revoked_by"].as_str()),
                (401, Some("revoked"), Some("everyone")),
                "{v}"
            );
        }
    }
    // Later, sign-ins work again on both instances.
    a.advance(Duration::from_secs(2));
    b.advance(Duration::from_secs(2));
    let res = create(b, key, json!({"user_id": "erin"})).await;
    assert_eq!(res.status(), 201);
    let token = res.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(verify(a, key, &token).await.0, 200);
}

#[tokio::test]
async fn delete_v1_sessions_signs_everyone_out_on_sqlite() {
    let mut a = Server::start(&[]);
    let key = a.api_key();
    let mut b = Server::start_on(tempfile::tempdir().unwrap(), &a.store_url(), &[]);
    everyone_is_signed_out(&mut a, &mut b, &key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_v1_sessions_signs_everyone_out_on_every_redis_instance() {
    let url = crate::backends::required_env("TESSERA_TEST_REDIS_URL");
    let prefix = format!("{}:", crate::backends::unique("tessera-kill"));
    let shared = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", shared.path().join("users.db").display());
    let env = [
        ("TESSERA_DATABASE", database.as_str()),
        ("TESSERA_STORE_KEY_PREFIX", prefix.as_str()),
    ];
    let mut a = Server::start_on(tempfile::tempdir().unwrap(), &url, &env);
    let mut b = Server::start_on(tempfile::tempdir().unwrap(), &url, &env);
    let (ok, out, err) =
        crate::common::run_cli_with(&url, &["api-key", "create", "backend"], None, &env);
    assert!(ok, "{err}");
    everyone_is_signed_out(&mut a, &mut b, out.trim()).await;
}
