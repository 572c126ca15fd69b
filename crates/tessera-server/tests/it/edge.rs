//! The server's edge under load and hostile input: the password-hashing
//! gate, the sign-in limiter under concurrency and across every password
//! door, input bounds, and the OAuth password grant's default.

use serde_json::{Value, json};

use crate::common::{
    Server, client, cookie_header, demo_login, get_text, list_sessions, login, session_cookie,
    try_login,
};

/// The server's resident-memory high-water mark, in KiB.
fn vm_hwm_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The value of a counter on `/metrics`.
async fn counter(server: &Server, name: &str) -> u64 {
    let metrics = get_text(server, "/metrics").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
}

const VERIFICATIONS: &str = "tessera_password_verifications_total";

/// `n` concurrent JSON sign-ins; `name(i)` and `password(i)` pick the
/// credentials. Every request must get an HTTP answer: the statuses.
async fn concurrent_logins(
    server: &Server,
    n: usize,
    name: impl Fn(usize) -> String,
    password: impl Fn(usize) -> String,
) -> Vec<(u16, Option<String>)> {
    let http = client();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let req = http
                .post(server.at("/login"))
                .json(&json!({"username": name(i), "password": password(i)}));
            tokio::spawn(async move {
                let res = req.send().await.expect("every sign-in gets an answer");
                let retry = res
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                (res.status().as_u16(), retry)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// 200 concurrent sign-ins with made-up names (which cost an Argon2
/// verification each, like real ones) must not grow the process by their
/// number times 19 MiB: the hashing gate admits a few at a time and
/// answers the rest 503 with `Retry-After` at once. Without the gate the
/// process grows by gigabytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_sign_ins_stays_within_the_memory_bound() {
    let server = Server::start(&[
        ("TESSERA_PASSWORD_HASH_CONCURRENCY", "2"),
        // Budgets out of the way: this measures the gate, not the limiter.
        ("TESSERA_LOGIN_MAX_FAILURES_PER_IP", "1000000"),
        ("TESSERA_LOGIN_MAX_FAILURES_PER_USER", "1000000"),
    ]);
    let before = vm_hwm_kib(&server);
    let checks_before = counter(&server, VERIFICATIONS).await;
    let answers = concurrent_logins(
        &server,
        200,
        |i| format!("nobody-{i}"),
        |i| format!("wrong-password-{i}"),
    )
    .await;
    let after = vm_hwm_kib(&server);
    let grown_mib = after.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 300,
        "resident high-water mark grew by {grown_mib} MiB"
    );
    let mut evaluated = 0;
    for (status, retry) in &answers {
        match status {
            401 => evaluated += 1,
            503 => assert_eq!(retry.as_deref(), Some("1")),
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(evaluated >= 2, "some were checked: {answers:?}");
    assert_eq!(
        counter(&server, VERIFICATIONS).await - checks_before,
        evaluated,
        "one verification per 401, none for a 503"
    );
    // The refused ones were not counted against anyone: the demo user can
    // sign in at once.
    demo_login(&server).await;
}

/// An unknown user name costs one verification, exactly like a known one
/// with a wrong password (no user enumeration by timing).
#[tokio::test]
async fn unknown_and_known_users_cost_one_verification_each() {
    let server = Server::start(&[]);
    let start = counter(&server, VERIFICATIONS).await;
    assert_eq!(
        try_login(&server, "nobody", "some-password").await.status(),
        401
    );
    assert_eq!(counter(&server, VERIFICATIONS).await, start + 1);
    assert_eq!(
        try_login(&server, "demo", "some-password").await.status(),
        401
    );
    assert_eq!(counter(&server, VERIFICATIONS).await, start + 2);
}

/// 40 concurrent wrong passwords for one user evaluate at most the
/// per-user limit: the attempt is reserved before the hash. (Asking the
/// limiter before the hash and telling it after let 28 through.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_evaluate_at_most_the_limit() {
    let server = Server::start(&[
        ("TESSERA_LOGIN_MAX_FAILURES_PER_USER", "5"),
        ("TESSERA_LOGIN_MAX_FAILURES_PER_IP", "20"),
    ]);
    let checks_before = counter(&server, VERIFICATIONS).await;
    let answers = concurrent_logins(
        &server,
        40,
        |_| "demo".to_owned(),
        |i| format!("guess-number-{i}"),
    )
    .await;
    let evaluated = answers.iter().filter(|(s, _)| *s == 401).count();
    assert!(evaluated <= 5, "{evaluated} guesses evaluated: {answers:?}");
    assert!(
        answers.iter().all(|(s, _)| matches!(s, 401 | 429 | 503)),
        "{answers:?}"
    );
    let run = counter(&server, VERIFICATIONS).await - checks_before;
    assert!(run <= 5, "{run} verifications ran");
    // Keep guessing until the budget is spent (a 503 spent none of it):
    // then even the right password is refused.
    for _ in 0..5 {
        try_login(&server, "demo", "one-more-guess").await;
    }
    let res = try_login(&server, "demo", server.demo_password.as_deref().unwrap()).await;
    assert_eq!(res.status(), 429);
    assert!(session_cookie(res.headers()).is_none());
}

/// Sign-in, the token endpoint's password grant, re-authentication,
/// password change and device-list revoke all spend one budget; past it
/// each of them answers 429 (the password change used to answer 401 for
/// ever).
#[tokio::test]
async fn every_password_door_spends_one_budget() {
    let server = Server::start(&[
        ("TESSERA_LOGIN_MAX_FAILURES_PER_USER", "4"),
        ("TESSERA_PASSWORD_GRANT", "true"),
    ]);
    let session = demo_login(&server).await;
    let other = demo_login(&server).await;
    let with_session = |req: reqwest::RequestBuilder| {
        req.header("cookie", cookie_header(&session.token))
            .header("x-csrf-token", &session.csrf)
    };
    let reauth = || {
        with_session(client().post(server.at("/reauth")))
            .json(&json!({"password": "wrong-password"}))
    };
    let change = || {
        with_session(client().post(server.at("/account/password"))).json(
            &json!({"current_password": "wrong-password", "new_password": "another-password"}),
        )
    };
    let grant = || {
        client().post(server.at("/token")).form(&[
            ("grant_type", "password"),
            ("username", "demo"),
            ("password", "wrong-password"),
        ])
    };
    assert_eq!(reauth().send().await.unwrap().status(), 401);
    assert_eq!(change().send().await.unwrap().status(), 401);
    assert_eq!(grant().send().await.unwrap().status(), 400);
    assert_eq!(
        try_login(&server, "demo", "wrong-password").await.status(),
        401
    );
    // The budget of 4 is spent, whichever door is knocked on next.
    assert_eq!(change().send().await.unwrap().status(), 429);
    assert_eq!(reauth().send().await.unwrap().status(), 429);
    assert_eq!(grant().send().await.unwrap().status(), 429);
    let revoke = with_session(client().delete(server.at(&format!("/sessions/{}", other.handle))))
        .json(&json!({"password": server.demo_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 429);
    // Nothing changed: both sessions live, the password is the old one.
    let key = server.api_key();
    assert_eq!(list_sessions(&server, &key, "demo").await.len(), 2);
    let logs = server.logs();
    assert!(logs.contains("password change, per user"), "{logs}");
}

/// Over-long user names and names with control characters are refused with
/// 400 before the limiter, the hash and the log.
#[tokio::test]
async fn bad_user_names_are_refused_before_the_limiter_hash_and_log() {
    let server = Server::start(&[("TESSERA_LOGIN_MAX_FAILURES_PER_IP", "3")]);
    let checks_before = counter(&server, VERIFICATIONS).await;
    let long = format!("x{}", "y".repeat(60_000));
    let forged = "alice\n{\"event\":\"login_succeeded\",\"user\":\"admin\"}";
    for name in [long.as_str(), forged, "tab\there", "esc\u{1b}[31m", ""] {
        for _ in 0..3 {
            let res = try_login(&server, name, "whatever-password").await;
            assert_eq!(res.status(), 400, "{name:.40}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"], "invalid_user");
        }
    }
    assert_eq!(counter(&server, VERIFICATIONS).await, checks_before);
    let logs = server.logs();
    assert!(!logs.contains("yyyyyyyyyy"), "the long name was logged");
    assert!(!logs.contains("login_succeeded"), "{logs}");
    // Every log line is one JSON object: no input split or forged a line.
    for line in logs.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    // Fifteen refusals, and the IP's budget of 3 is untouched.
    demo_login(&server).await;
}

/// A user name that looks like JSON is logged as a string, never as fields.
#[tokio::test]
async fn a_user_name_cannot_forge_audit_fields() {
    let server = Server::start(&[]);
    let name = "x\",\"event\":\"login_succeeded\",\"user\":\"admin";
    assert_eq!(
        try_login(&server, name, "whatever-password").await.status(),
        401
    );
    let logs = server.logs();
    let failures: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["fields"]["event"] == "login_failed")
        .collect();
    assert_eq!(failures.len(), 1, "{logs}");
    assert_eq!(failures[0]["fields"]["user"], name);
    assert!(!logs.contains("\"event\":\"login_succeeded\""), "{logs}");
}

async fn v1(
    server: &Server,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let res = client()
        .request(method, server.at(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// `/v1` bounds: data size after merging (also under concurrent writers),
/// keys per request, `ip` and `user_agent` lengths.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_inputs_are_bounded_and_refusals_change_nothing() {
    let server = Server::start(&[("TESSERA_MAX_SESSION_DATA", "4096")]);
    let key = server.api_key();
    let post = reqwest::Method::POST;
    let patch = reqwest::Method::PATCH;

    // Refused creations leave no session behind.
    let too_big = json!({"user_id": "ana", "data": {"blob": "x".repeat(5000)}});
    let (s, body) = v1(&server, &key, post.clone(), "/v1/sessions", too_big).await;
    assert_eq!((s, body["error"].as_str()), (413, Some("data_too_large")));
    let many: serde_json::Map<String, Value> =
        (0..300).map(|i| (format!("k{i}"), json!(1))).collect();
    let (s, _) = v1(
        &server,
        &key,
        post.clone(),
        "/v1/sessions",
        json!({"user_id": "ana", "data": many}),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = v1(
        &server,
        &key,
        post.clone(),
        "/v1/sessions",
        json!({"user_id": "ana", "ip": "1".repeat(65)}),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = v1(
        &server,
        &key,
        post.clone(),
        "/v1/sessions",
        json!({"user_id": "ana", "user_agent": "a\r\nX-Injected: 1"}),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = v1(
        &server,
        &key,
        post.clone(),
        "/v1/tokens",
        json!({"user_id": "ana", "data": {"blob": "x".repeat(5000)}}),
    )
    .await;
    assert_eq!(s, 413);
    assert!(list_sessions(&server, &key, "ana").await.is_empty());

    // Patches: each under the limit, together over it. The limit holds on
    // the merged data, atomically: what is stored never exceeds it, and
    // what a refused patch carried is not stored.
    let (s, created) = v1(
        &server,
        &key,
        post.clone(),
        "/v1/sessions",
        json!({"user_id": "ana", "data": {"keep": "me"}}),
    )
    .await;
    assert_eq!(s, 201);
    let token = created["token"].as_str().unwrap().to_owned();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let req = client()
                .patch(server.at("/v1/sessions/data"))
                .bearer_auth(&key)
                .json(&json!({"token": token, "set": {format!("part{i}"): "y".repeat(500)}}));
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => accepted += 1,
            413 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!((1..12).contains(&accepted), "{accepted} accepted");
    let (s, view) = v1(
        &server,
        &key,
        post.clone(),
        "/v1/sessions/verify",
        json!({"token": token}),
    )
    .await;
    assert_eq!(s, 200);
    let stored = serde_json::to_vec(&view["data"]).unwrap().len();
    assert!(stored <= 4096, "{stored} bytes stored");
    let parts = view["data"].as_object().unwrap().len() - 1;
    assert_eq!(parts, accepted, "exactly the accepted patches are stored");
    assert_eq!(view["data"]["keep"], "me");
    let too_many: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    let (s, _) = v1(
        &server,
        &key,
        patch,
        "/v1/sessions/data",
        json!({"token": token, "remove": too_many}),
    )
    .await;
    assert_eq!(s, 400);
    let (_, again) = v1(
        &server,
        &key,
        post,
        "/v1/sessions/verify",
        json!({"token": token}),
    )
    .await;
    assert_eq!(again["data"], view["data"]);
}

/// RFC 9700 §2.4: the password grant is off unless `password_grant = true`,
/// which logs a warning; access tokens name their client (RFC 9068).
#[tokio::test]
async fn the_password_grant_is_off_by_default_and_tokens_carry_client_id() {
    let server = Server::start(&[]);
    let password = server.demo_password.clone().unwrap();
    let grant = |server: &Server| {
        client().post(server.at("/token")).form(&[
            ("grant_type", "password"),
            ("username", "demo"),
            ("password", password.as_str()),
        ])
    };
    let res = grant(&server).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
    let key = server.api_key();
    assert!(list_sessions(&server, &key, "demo").await.is_empty());
    assert!(!server.logs().contains("RFC 9700"));

    let dir = server.stop();
    let server = Server::start_in(dir, &[("TESSERA_PASSWORD_GRANT", "true")]);
    assert!(
        server.logs().contains("password_grant is on"),
        "{}",
        server.logs()
    );
    let res = grant(&server).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let pair: Value = res.json().await.unwrap();
    let access = pair["access_token"].as_str().unwrap();
    let payload = access.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["client_id"], "tessera");
    assert_eq!(claims["sub"], "demo");
    // The grant still signs in with the password only once per budget.
    login(&server, "demo", &password).await;
}

/// Two instances on one shared store: concurrent wrong passwords split
/// between them evaluate at most one budget, and both refuse afterwards.
/// (With counters in each process, two instances gave twice the budget.)
async fn two_instances_share_one_budget(
    store: &str,
    database: Option<&str>,
    extra_env: &[(&str, &str)],
) {
    let mut env = vec![
        ("TESSERA_LOGIN_MAX_FAILURES_PER_USER", "4"),
        ("TESSERA_LOGIN_MAX_FAILURES_PER_IP", "1000"),
    ];
    if let Some(database) = database {
        env.push(("TESSERA_DATABASE", database));
    }
    env.extend_from_slice(extra_env);
    let a = Server::start_on(tempfile::tempdir().unwrap(), store, &env);
    let b = Server::start_on(tempfile::tempdir().unwrap(), store, &env);
    let password = a.demo_password.clone().expect("A creates the demo user");
    let http = client();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let server = if i % 2 == 0 { &a } else { &b };
            let req = http
                .post(server.at("/login"))
                .json(&json!({"username": "demo", "password": format!("guess-{i}")}));
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut evaluated = 0;
    for t in tasks {
        match t.await.unwrap() {
            401 => evaluated += 1,
            429 | 503 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        evaluated <= 4,
        "{evaluated} guesses evaluated over two instances"
    );
    // Spend what a 503 may have left, then both refuse the right password.
    for server in [&a, &b, &a, &b] {
        try_login(server, "demo", "one-more-guess").await;
    }
    for server in [&a, &b] {
        let res = try_login(server, "demo", &password).await;
        assert_eq!(res.status(), 429);
        assert!(session_cookie(res.headers()).is_none());
    }
    assert!(a.logs().contains("\"counters\":\"") && !a.logs().contains("\"counters\":\"memory\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_postgresql_share_one_sign_in_budget() {
    let db = crate::backends::PgDatabase::create();
    two_instances_share_one_budget(&db.url, None, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_mysql_share_one_sign_in_budget() {
    let db = crate::backends::MyDatabase::create();
    two_instances_share_one_budget(&db.url, None, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_redis_share_one_sign_in_budget() {
    let url = crate::backends::required_env("TESSERA_TEST_REDIS_URL");
    let prefix = format!("{}:", crate::backends::unique("tessera-edge"));
    let shared = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", shared.path().join("users.db").display());
    two_instances_share_one_budget(
        &url,
        Some(&database),
        &[("TESSERA_STORE_KEY_PREFIX", &prefix)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_redis_cluster_share_one_sign_in_budget() {
    let url = crate::backends::required_env("TESSERA_TEST_REDIS_CLUSTER_URL");
    let prefix = format!("{}:", crate::backends::unique("tessera-edge"));
    let shared = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", shared.path().join("users.db").display());
    two_instances_share_one_budget(
        &url,
        Some(&database),
        &[("TESSERA_STORE_KEY_PREFIX", &prefix)],
    )
    .await;
}
