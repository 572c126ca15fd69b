//! `/v1/requests/…` (what the Node and Python clients call) and the
//! compare-and-set `PATCH /v1/sessions/data`, over real HTTP.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, client, get_json, list_sessions};

/// POSTs `body` to `path` with the API key; (status, JSON body).
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

async fn patch(server: &Server, key: &str, body: Value) -> (u16, Value) {
    let res = client()
        .patch(server.at("/v1/sessions/data"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = res.status().as_u16();
    (code, res.json().await.unwrap())
}

/// Signs `user` in through the client API: (token, csrf token, body).
async fn sign_in(server: &Server, key: &str, user: &str) -> (String, String, Value) {
    let (code, body) = call(
        server,
        key,
        "/v1/requests/login",
        json!({"user_id": user, "ip": "192.0.2.1", "user_agent": "test"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let csrf = body["session"]["csrf_token"].as_str().unwrap().to_owned();
    (token, csrf, body)
}

/// `POST /v1/requests/check` for a request with this session cookie.
async fn check(server: &Server, key: &str, token: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"method": "GET", "cookie": format!("theme=dark; session={token}")});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            body.insert(k.clone(), v.clone());
        }
    }
    call(server, key, "/v1/requests/check", body).await
}

fn only_cookie(body: &Value) -> String {
    let cookies = body["set_cookie"].as_array().unwrap();
    assert_eq!(cookies.len(), 1, "{body}");
    cookies[0].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn client_sign_in_issues_a_cookie_and_kills_the_presented_token() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let (first, _, body) = sign_in(&server, &key, "alice").await;
    let cookie = only_cookie(&body);
    assert!(cookie.starts_with(&format!("session={first};")), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert_eq!(body["session"]["user_id"], "alice");

    let (code, seen) = check(&server, &key, &first, json!({})).await;
    assert_eq!(code, 200);
    assert_eq!(seen["outcome"], "session", "{seen}");
    assert_eq!(seen["token"], first.as_str());
    assert_eq!(seen["session"]["user_id"], "alice");
    assert_eq!(seen["set_cookie"], json!([]));

    // Signing in again from that session: a new token, the old one dead.
    let (code, again) = call(
        &server,
        &key,
        "/v1/requests/login",
        json!({"token": first, "user_id": "bob"}),
    )
    .await;
    assert_eq!(code, 200, "{again}");
    let second = again["token"].as_str().unwrap();
    assert_ne!(second, first);
    let (_, old) = check(&server, &key, &first, json!({})).await;
    assert_eq!(old["outcome"], "no_session", "{old}");
    assert_eq!(old["reason"], "missing");
    // The dead cookie is cleared.
    assert!(only_cookie(&old).contains("Max-Age=0"), "{old}");
    let (_, new) = check(&server, &key, second, json!({})).await;
    assert_eq!(new["session"]["user_id"], "bob");
    assert!(list_sessions(&server, &key, "alice").await.is_empty());
}

#[tokio::test]
async fn client_check_runs_the_csrf_and_origin_guard() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let (token, csrf, _) = sign_in(&server, &key, "alice").await;
    let (_, before) = check(&server, &key, &token, json!({"touch": false})).await;

    // No token, a wrong token, a token from another session: refused.
    let (_, other_csrf, _) = sign_in(&server, &key, "mallory").await;
    for (csrf_token, reason) in [
        (Value::Null, "csrf_token_missing"),
        (json!("junk"), "csrf_token_invalid"),
        (json!(other_csrf), "csrf_token_invalid"),
    ] {
        let (code, refused) = check(
            &server,
            &key,
            &token,
            json!({"method": "POST", "sec_fetch_site": "same-origin", "csrf_token": csrf_token}),
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(refused["outcome"], "refused", "{refused}");
        assert_eq!(refused["reason"], reason);
        assert_eq!(refused["status"], 403);
        assert_eq!(refused["token"], Value::Null);
        assert_eq!(refused["set_cookie"], json!([]));
    }
    // Cross-site: refused whatever token it carries, and with no cookie at
    // all (login CSRF).
    let cross = json!({"method": "POST", "sec_fetch_site": "cross-site",
        "origin": "https://evil.test", "host": "app.test", "csrf_token": csrf});
    let (_, refused) = check(&server, &key, &token, cross.clone()).await;
    assert_eq!(refused["reason"], "cross_site", "{refused}");
    let mut anonymous = cross.clone();
    anonymous["cookie"] = Value::Null;
    let (_, refused) = call(&server, &key, "/v1/requests/check", anonymous).await;
    assert_eq!(refused["reason"], "cross_site", "{refused}");
    let (_, refused) = check(
        &server,
        &key,
        &token,
        json!({"method": "DELETE", "origin": "https://evil.test", "host": "app.test", "csrf_token": csrf}),
    )
    .await;
    assert_eq!(refused["reason"], "foreign_origin", "{refused}");

    // Refusals wrote nothing.
    let (_, after) = check(&server, &key, &token, json!({"touch": false})).await;
    assert_eq!(
        after["session"]["last_seen_at"],
        before["session"]["last_seen_at"]
    );
    assert_eq!(after["session"]["data"], before["session"]["data"]);

    // The right token, same origin: accepted. A bearer token is exempt.
    let (_, ok) = check(
        &server,
        &key,
        &token,
        json!({"method": "POST", "sec_fetch_site": "same-origin",
            "origin": "http://app.test", "host": "app.test", "csrf_token": csrf}),
    )
    .await;
    assert_eq!(ok["outcome"], "session", "{ok}");
    let (_, bearer) = call(
        &server,
        &key,
        "/v1/requests/check",
        json!({"method": "POST", "authorization": format!("Bearer {token}"),
            "sec_fetch_site": "cross-site"}),
    )
    .await;
    assert_eq!(bearer["outcome"], "session", "{bearer}");
}

#[tokio::test]
async fn client_check_reports_idle_and_absolute_expiry() {
    let mut server = Server::start(&[
        ("TESSERA_IDLE_TIMEOUT", "10m"),
        ("TESSERA_ABSOLUTE_TIMEOUT", "30m"),
        ("TESSERA_TOUCH_STEP", "0s"),
    ]);
    let key = server.api_key();
    let (idle, _, _) = sign_in(&server, &key, "alice").await;
    let (absolute, _, _) = sign_in(&server, &key, "bob").await;
    // Keep `absolute` active while `idle` idles out.
    for _ in 0..3 {
        server.advance(Duration::from_secs(8 * 60));
        let (_, kept) = check(&server, &key, &absolute, json!({})).await;
        assert_eq!(kept["outcome"], "session", "{kept}");
    }
    let (_, gone) = check(&server, &key, &idle, json!({})).await;
    assert_eq!(gone["outcome"], "no_session");
    assert_eq!(gone["reason"], "expired_idle");
    assert!(only_cookie(&gone).contains("Max-Age=0"));
    server.advance(Duration::from_secs(7 * 60));
    let (_, gone) = check(&server, &key, &absolute, json!({})).await;
    assert_eq!(gone["reason"], "expired_absolute", "{gone}");
    // Rotating a dead session says why.
    let (code, body) = call(
        &server,
        &key,
        "/v1/requests/rotate",
        json!({"token": absolute}),
    )
    .await;
    assert_eq!(code, 401);
    assert_eq!(
        body["reason"], "missing",
        "the expired record was deleted on first sight"
    );
}

#[tokio::test]
async fn client_status_check_does_not_move_the_idle_deadline() {
    let mut server = Server::start(&[
        ("TESSERA_IDLE_TIMEOUT", "10m"),
        ("TESSERA_TOUCH_STEP", "1m"),
    ]);
    let key = server.api_key();
    let (token, _, body) = sign_in(&server, &key, "alice").await;
    let first = body["session"]["idle_expires_at"].clone();
    server.advance(Duration::from_secs(2 * 60));
    let (_, polled) = check(&server, &key, &token, json!({"touch": false})).await;
    assert_eq!(polled["session"]["idle_expires_at"], first);
    let (_, active) = check(&server, &key, &token, json!({})).await;
    assert_ne!(active["session"]["idle_expires_at"], first, "{active}");
}

#[tokio::test]
async fn client_rotate_and_logout() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let (token, _, body) = sign_in(&server, &key, "alice").await;
    let (code, _) = patch(
        &server,
        &key,
        json!({"token": token, "set": {"theme": "dark"}}),
    )
    .await;
    assert_eq!(code, 200);

    let (code, rotated) = call(
        &server,
        &key,
        "/v1/requests/rotate",
        json!({"token": token}),
    )
    .await;
    assert_eq!(code, 200, "{rotated}");
    let new = rotated["token"].as_str().unwrap().to_owned();
    assert!(only_cookie(&rotated).starts_with(&format!("session={new};")));
    assert_eq!(rotated["session"]["handle"], body["session"]["handle"]);
    assert_eq!(rotated["session"]["data"]["theme"], "dark");
    let (_, old) = check(&server, &key, &token, json!({})).await;
    assert_eq!(old["outcome"], "no_session");

    let (code, out) = call(&server, &key, "/v1/requests/logout", json!({"token": new})).await;
    assert_eq!(code, 200);
    assert_eq!(out["ended"], true);
    assert!(only_cookie(&out).contains("Max-Age=0"), "{out}");
    let (_, after) = check(&server, &key, &new, json!({})).await;
    assert_eq!(after["outcome"], "no_session");
    // Signing out again, or without a session, is not an error.
    let (code, out) = call(&server, &key, "/v1/requests/logout", json!({})).await;
    assert_eq!(code, 200);
    assert_eq!(out["ended"], false);
}

#[tokio::test]
async fn client_routes_refuse_bad_input_with_400() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let (token, _, _) = sign_in(&server, &key, "alice").await;
    let (_, before) = check(&server, &key, &token, json!({"touch": false})).await;
    for (path, body, error) in [
        (
            "/v1/requests/check",
            json!({"method": ""}),
            "invalid_method",
        ),
        (
            "/v1/requests/check",
            json!({"method": "GE T"}),
            "invalid_method",
        ),
        (
            "/v1/requests/check",
            json!({"method": "GET", "cookie": "session=a\r\nx: y"}),
            "invalid_header",
        ),
        (
            "/v1/requests/check",
            json!({"method": "GET", "surprise": 1}),
            "invalid_json",
        ),
        ("/v1/requests/check", json!({}), "invalid_json"),
        (
            "/v1/requests/login",
            json!({"user_id": ""}),
            "invalid_user_id",
        ),
        (
            "/v1/requests/login",
            json!({"user_id": "a", "token": "nope"}),
            "invalid_token",
        ),
    ] {
        let (code, answer) = call(&server, &key, path, body.clone()).await;
        assert_eq!(code, 400, "{path} {body}: {answer}");
        assert_eq!(answer["error"], error, "{path} {body}: {answer}");
    }
    let (code, _) = patch(&server, &key, json!({"token": token, "expect": [1]})).await;
    assert_eq!(code, 400);
    // Nothing changed: no new session, the old one as it was.
    assert_eq!(list_sessions(&server, &key, "alice").await.len(), 1);
    let (_, after) = check(&server, &key, &token, json!({"touch": false})).await;
    assert_eq!(after["session"]["data"], before["session"]["data"]);
    assert_eq!(
        after["session"]["last_seen_at"],
        before["session"]["last_seen_at"]
    );
}

#[tokio::test]
async fn patch_with_expect_is_compare_and_set() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let (token, _, _) = sign_in(&server, &key, "alice").await;
    let (code, body) = patch(
        &server,
        &key,
        json!({"token": token, "set": {"n": 1}, "expect": {"n": null}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // A stale expectation writes nothing and returns the current data.
    let (code, body) = patch(
        &server,
        &key,
        json!({"token": token, "set": {"n": 1}, "expect": {"n": null}}),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["reason"], "expectation_failed");
    assert_eq!(body["session"]["data"]["n"], 1);

    // Concurrent read-modify-write loops lose nothing.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (url, key, token) = (server.at("/v1/sessions/data"), key.clone(), token.clone());
            tokio::spawn(async move {
                let mut current = 1;
                loop {
                    let res = client()
                        .patch(&url)
                        .bearer_auth(&key)
                        .json(&json!({"token": token, "set": {"n": current + 1}, "expect": {"n": current}}))
                        .send()
                        .await
                        .unwrap();
                    let status = res.status().as_u16();
                    let body: Value = res.json().await.unwrap();
                    match status {
                        200 => break,
                        409 => current = body["session"]["data"]["n"].as_i64().unwrap(),
                        other => panic!("{other}: {body}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let (_, after) = check(&server, &key, &token, json!({})).await;
    assert_eq!(after["session"]["data"]["n"], 21);
}

#[tokio::test]
async fn client_routes_are_in_the_openapi_document() {
    let server = Server::start(&[]);
    let doc = get_json(&server, "/openapi.json").await;
    for path in [
        "/v1/requests/check",
        "/v1/requests/check-batch",
        "/v1/requests/login",
        "/v1/requests/rotate",
        "/v1/requests/logout",
    ] {
        assert!(doc["paths"][path]["post"].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["CheckResponse"].is_object());
    // Without an API key: 401, like every /v1 route.
    let res = client()
        .post(server.at("/v1/requests/check"))
        .json(&json!({"method": "GET"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn client_check_batch_decides_each_request_as_the_single_check() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let (token, csrf, _) = sign_in(&server, &key, "alice").await;
    let cookie = format!("session={token}");
    let (code, body) = call(
        &server,
        &key,
        "/v1/requests/check-batch",
        json!({"requests": [
            {"method": "GET", "cookie": cookie},
            {"method": "POST", "cookie": cookie, "sec_fetch_site": "same-origin"},
            {"method": "GE T", "cookie": cookie},
            {"method": "POST", "cookie": cookie, "sec_fetch_site": "same-origin", "csrf_token": csrf},
            {"method": "GET"},
        ]}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["outcome"], "session");
    assert_eq!(results[0]["session"]["user_id"], "alice");
    assert_eq!(results[1]["outcome"], "refused");
    assert_eq!(results[1]["reason"], "csrf_token_missing");
    assert_eq!(results[2]["outcome"], "bad_request");
    assert_eq!(results[2]["reason"], "invalid_method");
    assert_eq!(results[2]["status"], 400);
    assert_eq!(results[3]["outcome"], "session");
    assert_eq!(results[4]["outcome"], "no_session");
    assert_eq!(results[4]["reason"], "missing");

    for bad in [
        json!({"requests": []}),
        json!({"requests": [{}]}),
        json!([]),
    ] {
        let (code, _) = call(&server, &key, "/v1/requests/check-batch", bad.clone()).await;
        assert_eq!(code, 400, "{bad}");
    }
    let too_many: Vec<Value> = (0..257).map(|_| json!({"method": "GET"})).collect();
    let (code, body) = call(
        &server,
        &key,
        "/v1/requests/check-batch",
        json!({ "requests": too_many }),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(body["error"], "invalid_batch");
}

/// A state-changing check of this session, with its CSRF token.
fn post(csrf: &str, patch: Value) -> Value {
    json!({"method": "POST", "sec_fetch_site": "same-origin", "csrf_token": csrf, "patch": patch})
}

/// The session as stored, read without counting as activity.
async fn stored(server: &Server, key: &str, token: &str) -> Value {
    let (code, body) = check(server, key, token, json!({"touch": false})).await;
    assert_eq!(code, 200, "{body}");
    let mut session = body["session"].clone();
    // A fresh masked CSRF token on every answer: not part of the state.
    session["csrf_token"] = Value::Null;
    session
}

#[tokio::test]
async fn check_patch_writes_in_the_same_call_after_the_guard() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let (token, csrf, _) = sign_in(&server, &key, "alice").await;

    let (code, body) = check(
        &server,
        &key,
        &token,
        post(
            &csrf,
            json!({"set": {"n": 1, "theme": "dark"}, "expect": {"n": null}}),
        ),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["outcome"], "session");
    assert_eq!(body["patch"], "applied");
    assert_eq!(body["session"]["data"], json!({"n": 1, "theme": "dark"}));
    assert_eq!(stored(&server, &key, &token).await["data"]["n"], 1);

    // A stale expectation writes nothing and answers the current data.
    let before = stored(&server, &key, &token).await;
    let (code, body) = check(
        &server,
        &key,
        &token,
        post(&csrf, json!({"set": {"n": 1}, "expect": {"n": null}})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["patch"], "conflict");
    assert_eq!(body["session"]["data"]["n"], 1);
    assert_eq!(stored(&server, &key, &token).await, before);

    // Remove, by a bearer check (exempt from CSRF, as for any route).
    let (code, body) = call(
        &server,
        &key,
        "/v1/requests/check",
        json!({"method": "PATCH", "authorization": format!("Bearer {token}"),
            "patch": {"remove": ["theme"]}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["patch"], "applied");
    assert_eq!(body["set_cookie"], json!([]));
    assert_eq!(stored(&server, &key, &token).await["data"], json!({"n": 1}));
    // A plain check says nothing about a patch.
    let (_, plain) = check(&server, &key, &token, json!({})).await;
    assert!(plain.get("patch").is_none(), "{plain}");
}

/// A client's write: a bearer check with a patch, which goes straight to
/// the store's atomic patch.
async fn write(server: &Server, key: &str, token: &str, patch: Value) -> Value {
    let (code, body) = call(
        server,
        key,
        "/v1/requests/check",
        json!({"method": "PATCH", "authorization": format!("Bearer {token}"),
            "touch": true, "patch": patch}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    body
}

#[tokio::test]
async fn bearer_writes_keep_the_compare_and_set_contract() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let (token, _, _) = sign_in(&server, &key, "alice").await;

    let body = write(
        &server,
        &key,
        &token,
        json!({"set": {"n": 1}, "expect": {"n": null}}),
    )
    .await;
    assert_eq!(
        (body["outcome"].as_str(), body["patch"].as_str()),
        (Some("session"), Some("applied")),
        "{body}"
    );
    assert_eq!(body["session"]["user_id"], "alice", "{body}");
    assert_eq!(body["session"]["data"], json!({"n": 1}));
    // Stale: nothing written, the stored data comes back.
    let before = stored(&server, &key, &token).await;
    let body = write(
        &server,
        &key,
        &token,
        json!({"set": {"n": 1}, "expect": {"n": null}}),
    )
    .await;
    assert_eq!(body["patch"], "conflict", "{body}");
    assert_eq!(body["session"]["data"], json!({"n": 1}));
    assert_eq!(stored(&server, &key, &token).await, before);
    // An expected-only key is compared, not written.
    let body = write(
        &server,
        &key,
        &token,
        json!({"set": {"m": 2}, "expect": {"n": 5}}),
    )
    .await;
    assert_eq!(body["patch"], "conflict", "{body}");
    let body = write(
        &server,
        &key,
        &token,
        json!({"set": {"m": 2}, "expect": {"n": 1}}),
    )
    .await;
    assert_eq!(body["patch"], "applied", "{body}");
    assert_eq!(body["session"]["data"], json!({"n": 1, "m": 2}));
    // The contract reads an expected null as "absent or null": a stored
    // null is matched (the store itself compares exactly).
    write(&server, &key, &token, json!({"set": {"z": null}})).await;
    let body = write(
        &server,
        &key,
        &token,
        json!({"set": {"z": 7}, "expect": {"z": null}}),
    )
    .await;
    assert_eq!(body["patch"], "applied", "{body}");
    assert_eq!(body["session"]["data"]["z"], 7);
    // Removal under an expectation.
    let body = write(
        &server,
        &key,
        &token,
        json!({"remove": ["z"], "expect": {"z": 7}}),
    )
    .await;
    assert_eq!(body["patch"], "applied", "{body}");
    assert!(body["session"]["data"].get("z").is_none(), "{body}");

    // After sign-out a write resurrects nothing and says why.
    let (code, _) = call(
        &server,
        &key,
        "/v1/requests/logout",
        json!({"token": token}),
    )
    .await;
    assert_eq!(code, 200);
    let body = write(&server, &key, &token, json!({"set": {"n": 9}})).await;
    assert_eq!(body["outcome"], "no_session", "{body}");
    assert_eq!(body["reason"], "signed_out", "{body}");
    assert!(body.get("patch").is_none(), "{body}");
}

#[tokio::test]
async fn check_patch_refused_by_the_guard_or_without_a_session_writes_nothing() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let (token, csrf, _) = sign_in(&server, &key, "alice").await;
    let before = stored(&server, &key, &token).await;
    let patch = json!({"set": {"stolen": true}});
    for facts in [
        json!({"method": "POST", "sec_fetch_site": "same-origin", "patch": patch}),
        json!({"method": "POST", "sec_fetch_site": "same-origin", "csrf_token": "junk", "patch": patch}),
        json!({"method": "POST", "sec_fetch_site": "cross-site", "csrf_token": csrf, "patch": patch}),
        json!({"method": "POST", "origin": "https://evil.test", "host": "app.test",
            "csrf_token": csrf, "patch": patch}),
    ] {
        let (code, body) = check(&server, &key, &token, facts.clone()).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["outcome"], "refused", "{facts} → {body}");
        assert!(body.get("patch").is_none(), "{body}");
        assert_eq!(stored(&server, &key, &token).await, before, "{facts}");
    }

    // A dead token: no session, nothing written, nothing created.
    let (code, out) = call(
        &server,
        &key,
        "/v1/requests/logout",
        json!({"token": token}),
    )
    .await;
    assert_eq!(code, 200, "{out}");
    let (code, body) = check(&server, &key, &token, post(&csrf, patch)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["outcome"], "no_session", "{body}");
    assert!(body.get("patch").is_none(), "{body}");
    assert!(list_sessions(&server, &key, "alice").await.is_empty());
}

#[tokio::test]
async fn check_patch_bad_input_is_a_clear_4xx_and_changes_nothing() {
    let server = Server::start(&[("TESSERA_MAX_SESSION_DATA", "1024")]);
    let key = server.api_key();
    let (token, csrf, _) = sign_in(&server, &key, "alice").await;
    let (_, body) = check(&server, &key, &token, post(&csrf, json!({"set": {"n": 1}}))).await;
    assert_eq!(body["patch"], "applied", "{body}");
    let before = stored(&server, &key, &token).await;

    let many: serde_json::Map<String, Value> =
        (0..1000).map(|i| (format!("k{i}"), json!(i))).collect();
    for (patch, code, error) in [
        (json!({"set": {"": 1}}), 400, "invalid_data"),
        (json!({"remove": ["x".repeat(300)]}), 400, "invalid_data"),
        (json!({"set": many}), 400, "invalid_data"),
        (json!({}), 400, "invalid_patch"),
        (json!({"expect": {"n": 1}}), 400, "invalid_patch"),
        (
            json!({"set": {"n": 2}, "increment": {"n": 1}}),
            400,
            "invalid_json",
        ),
        (json!({"set": [1, 2]}), 400, "invalid_json"),
        (json!("n"), 400, "invalid_json"),
        (
            json!({"set": {"big": "x".repeat(2000)}}),
            413,
            "data_too_large",
        ),
    ] {
        let (status, body) = check(&server, &key, &token, post(&csrf, patch.clone())).await;
        assert_eq!(status, code, "{patch} → {body}");
        assert_eq!(body["error"], error, "{patch} → {body}");
        assert_eq!(stored(&server, &key, &token).await, before, "{patch}");
    }

    // In a batch, a bad patch is that request's answer only.
    let requests: Vec<Value> = [
        post(&csrf, json!({"set": {"big": "x".repeat(2000)}})),
        post(&csrf, json!({"set": {"": 1}})),
        json!({"method": "GET"}),
    ]
    .into_iter()
    .map(|mut r| {
        r["cookie"] = json!(format!("session={token}"));
        r
    })
    .collect();
    let (code, body) = call(
        &server,
        &key,
        "/v1/requests/check-batch",
        json!({ "requests": requests }),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["outcome"], "bad_request");
    assert_eq!(results[0]["status"], 413);
    assert_eq!(results[0]["reason"], "data_too_large");
    assert_eq!(results[1]["status"], 400);
    assert_eq!(results[1]["reason"], "invalid_data");
    assert_eq!(results[2]["outcome"], "session");
    assert_eq!(stored(&server, &key, &token).await, before);
}

#[tokio::test]
async fn check_patch_compare_and_set_loses_no_concurrent_update() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let (token, csrf, _) = sign_in(&server, &key, "alice").await;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (url, key, token, csrf) = (
                server.at("/v1/requests/check"),
                key.clone(),
                token.clone(),
                csrf.clone(),
            );
            tokio::spawn(async move {
                let mut current = Value::Null;
                loop {
                    let next = current.as_i64().unwrap_or(0) + 1;
                    let mut body =
                        post(&csrf, json!({"set": {"n": next}, "expect": {"n": current}}));
                    body["cookie"] = json!(format!("session={token}"));
                    let res = client()
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    let answer: Value = res.json().await.unwrap();
                    match answer["patch"].as_str() {
                        Some("applied") => break,
                        Some("conflict") => current = answer["session"]["data"]["n"].clone(),
                        _ => panic!("{answer}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(stored(&server, &key, &token).await["data"]["n"], 100);
}

#[tokio::test]
async fn check_without_touch_says_whether_a_touch_is_due() {
    let mut server = Server::start(&[
        ("TESSERA_IDLE_TIMEOUT", "10m"),
        ("TESSERA_TOUCH_STEP", "1m"),
    ]);
    let key = server.api_key();
    let (token, _, body) = sign_in(&server, &key, "alice").await;
    let first = body["session"]["idle_expires_at"].clone();
    let (_, fresh) = check(&server, &key, &token, json!({"touch": false})).await;
    assert_eq!(fresh["touch_due"], false, "{fresh}");
    server.advance(Duration::from_secs(2 * 60));
    let (_, due) = check(&server, &key, &token, json!({"touch": false})).await;
    assert_eq!(due["touch_due"], true, "{due}");
    assert_eq!(due["session"]["idle_expires_at"], first);
    // The deferred touch: a check with touch (here by bearer, as the
    // clients send it after the application answered).
    let (_, touched) = call(
        &server,
        &key,
        "/v1/requests/check",
        json!({"method": "GET", "authorization": format!("Bearer {token}")}),
    )
    .await;
    assert_ne!(touched["session"]["idle_expires_at"], first, "{touched}");
    assert!(touched.get("touch_due").is_none(), "{touched}");
    let (_, after) = check(&server, &key, &token, json!({"touch": false})).await;
    assert_eq!(after["touch_due"], false, "{after}");
}
