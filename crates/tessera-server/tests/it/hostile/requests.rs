//! Oversized, stuffed, duplicated and injected requests.

use serde_json::Value;

use super::client::{delta, sign_in, status_with_cookie, store_calls};
use super::raw::{self, Outcome};
use crate::common::{SECURE_COOKIE, Server, client, set_cookie_value};

/// A refusal is a 4xx answer or a closed connection; never a 2xx or 5xx.
fn assert_refused(what: &str, outcome: &Outcome) {
    if let Some(status) = outcome.status() {
        assert!(
            (400..500).contains(&status),
            "{what}: expected a 4xx refusal, got {status}: {outcome:?}"
        );
    }
}

async fn assert_alive(server: &Server) {
    let res = client().get(server.at("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200, "the server stopped answering");
}

fn api_key(server: &Server) -> String {
    let (ok, out, err) = server.cli(&["api-key", "create", "backend"], None);
    assert!(ok, "{err}");
    out.trim().to_owned()
}

#[tokio::test]
async fn oversized_headers_are_refused_and_the_server_keeps_serving() {
    let server = Server::start_secure(&[]);
    let token = sign_in(&server).await;

    // One 1 MiB header: larger than any buffer the server should grow.
    let big = format!("X-Big: {}", "a".repeat(1 << 20));
    let out = raw::send(server.port, raw::get("/session", &[big.as_bytes()])).await;
    assert_refused("1 MiB header", &out);

    // A 1 MiB Cookie header, the valid token inside.
    let cookie = format!(
        "Cookie: {}; {SECURE_COOKIE}={token}",
        "junk=x; ".repeat((1 << 20) / 8)
    );
    let out = raw::send(server.port, raw::get("/session", &[cookie.as_bytes()])).await;
    assert_refused("1 MiB cookie header", &out);

    // A thousand headers.
    let many: Vec<String> = (0..1000).map(|i| format!("X-H{i}: v")).collect();
    let refs: Vec<&[u8]> = many.iter().map(|h| h.as_bytes()).collect();
    let out = raw::send(server.port, raw::get("/session", &refs)).await;
    assert_refused("1000 headers", &out);

    // A 100 KiB request target.
    let path = format!("/session?{}", "q".repeat(100 * 1024));
    let out = raw::send(server.port, raw::get(&path, &[])).await;
    assert_refused("100 KiB URI", &out);

    // None of it cost the valid session anything.
    assert_alive(&server).await;
    let (code, body) = status_with_cookie(&server, &format!("{SECURE_COOKIE}={token}")).await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn oversized_bodies_get_413_and_change_nothing() {
    let server = Server::start_secure(&[]);
    let key = api_key(&server);
    // Raw sockets that read while they write: after a 413 the server closes
    // the connection without reading the rest of the body, and a client
    // still writing then sees a broken pipe instead of the answer.
    let huge = "x".repeat(1 << 20);
    let post = |path: &str, auth: Option<&str>, body: String| {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(key) = auth {
            req.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        req.push_str("\r\n");
        let mut req = req.into_bytes();
        req.extend_from_slice(body.as_bytes());
        raw::send(server.port, req)
    };

    // A sign-in with a 1 MiB password: refused before any password hashing.
    let body = serde_json::json!({"username": "demo", "password": huge}).to_string();
    let out = post("/login", None, body).await;
    assert_eq!(out.status(), Some(413), "{out:?}");
    assert!(
        !out.headers()
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("set-cookie")),
        "{out:?}"
    );
    assert!(out.body_text().contains("payload_too_large"), "{out:?}");

    // The /v1 API, with a valid key.
    let body = serde_json::json!({"user_id": "bob", "data": {"blob": huge}}).to_string();
    let out = post("/v1/sessions", Some(&key), body).await;
    assert_eq!(out.status(), Some(413), "{out:?}");
    let c = || client();
    let res = c()
        .get(server.at("/v1/users/bob/sessions"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let list: Value = res.json().await.unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");

    // Chunked, so the size is not announced: still cut at the limit.
    let mut req = b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..64 {
        req.extend_from_slice(format!("4000\r\n{}\r\n", "y".repeat(0x4000)).as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let out = raw::send(server.port, req).await;
    assert_eq!(out.status(), Some(413), "{out:?}");

    // A Content-Length of a terabyte: refused from the header, not
    // buffered (with no body bytes at all: see slow.rs,
    // announced_oversized_body_gets_413_at_once_with_connection_close).
    let mut req = b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
        Content-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n"
        .to_vec();
    req.extend_from_slice(&vec![b'z'; 256 * 1024]);
    let out = raw::send(server.port, req).await;
    assert_eq!(out.status(), Some(413), "{out:?}");

    assert_alive(&server).await;
}

#[tokio::test]
async fn cookie_stuffing_costs_bounded_work_and_no_store_call() {
    let server = Server::start_secure(&[]);
    let token = sign_in(&server).await;

    // The token first, then thousands of junk cookies: found.
    let cookie = format!("{SECURE_COOKIE}={token}; {}", "j=1; ".repeat(4000));
    let (code, body) = status_with_cookie(&server, &cookie).await;
    assert_eq!(code, 200, "{body}");
    // And behind them: every pair is examined, there is no cut-off.
    let cookie = format!("{}{SECURE_COOKIE}={token}", "j=1; ".repeat(4000));
    let (code, body) = status_with_cookie(&server, &cookie).await;
    assert_eq!(code, 200, "{body}");

    // Thousands of junk values under the session's own name: no store call.
    let before = store_calls(&server).await;
    let junk = format!("{SECURE_COOKIE}=junk; ").repeat(4000);
    let (code, body) = status_with_cookie(&server, &junk).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["error"], "unauthenticated", "{body}");
    let after = store_calls(&server).await;
    assert!(
        delta(&before, &after).is_empty(),
        "junk cookies caused store calls: {:?}",
        delta(&before, &after)
    );

    // Non-UTF-8 bytes in a Cookie header: the junk pair is skipped (the
    // token beside it may still be found), never a 500.
    let mut cookie = b"Cookie: a=\xff\xfe; ".to_vec();
    cookie.extend_from_slice(format!("{SECURE_COOKIE}={token}").as_bytes());
    let out = raw::send(server.port, raw::get("/session", &[cookie.as_slice()])).await;
    assert!(
        matches!(out.status(), Some(200 | 401)),
        "non-UTF-8 cookie: {out:?}"
    );
    let out = raw::send(
        server.port,
        raw::get("/session", &[b"Cookie: __Host-session=\xff\xfe\x80"]),
    )
    .await;
    assert_eq!(out.status(), Some(401), "{out:?}");
}

#[tokio::test]
async fn duplicate_host_cookies_never_pick_a_session() {
    let server = Server::start_secure(&[]);
    server.add_user("mallory", "mallory-password-1");
    let victim = sign_in(&server).await;
    let res = client()
        .post(server.at("/login"))
        .json(&serde_json::json!({"username": "mallory", "password": "mallory-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let attacker = set_cookie_value(res.headers(), SECURE_COOKIE).unwrap();
    let unknown = tessera::token::SessionToken::generate().unwrap();

    // The same token twice is the same session.
    let (code, body) = status_with_cookie(
        &server,
        &format!("{SECURE_COOKIE}={victim}; {SECURE_COOKIE}={victim}"),
    )
    .await;
    assert_eq!((code, body["user"].as_str()), (200, Some("demo")), "{body}");

    // Victim's and attacker's live sessions side by side, in either order:
    // neither is used (fixation through a planted duplicate).
    for cookie in [
        format!("{SECURE_COOKIE}={victim}; {SECURE_COOKIE}={attacker}"),
        format!("{SECURE_COOKIE}={attacker}; {SECURE_COOKIE}={victim}"),
        // The attacker's first, then junk pairs to push the victim's past
        // a cut-off (there was one at 64 pairs): still both seen.
        format!(
            "{SECURE_COOKIE}={attacker}; {}{SECURE_COOKIE}={victim}",
            "j=1; ".repeat(64)
        ),
        format!(
            "{SECURE_COOKIE}={attacker}; {}{SECURE_COOKIE}={victim}",
            "j=1; ".repeat(2000)
        ),
    ] {
        let (code, body) = status_with_cookie(&server, &cookie).await;
        assert_eq!(code, 401, "ambiguous cookies were accepted: {body}");
        assert_ne!(body["user"], "mallory");
    }
    // The same across two Cookie header lines.
    let out = raw::send(
        server.port,
        raw::get(
            "/session",
            &[
                format!("Cookie: {SECURE_COOKIE}={attacker}").as_bytes(),
                format!("Cookie: {SECURE_COOKIE}={victim}").as_bytes(),
            ],
        ),
    )
    .await;
    assert_eq!(out.status(), Some(401), "{out:?}");

    // A well-formed but unknown duplicate also makes it ambiguous.
    let (code, _) = status_with_cookie(
        &server,
        &format!(
            "{SECURE_COOKIE}={victim}; {SECURE_COOKIE}={}",
            unknown.expose()
        ),
    )
    .await;
    assert_eq!(code, 401);

    // Junk beside the real token does not hide it.
    let (code, body) = status_with_cookie(
        &server,
        &format!("{SECURE_COOKIE}=junk; {SECURE_COOKIE}={victim}; {SECURE_COOKIE}=\"\""),
    )
    .await;
    assert_eq!((code, body["user"].as_str()), (200, Some("demo")), "{body}");

    // Cookies without the exact prefix (which a sibling host or plain HTTP
    // could set) are never the session.
    for name in [
        "session",
        "__host-session",
        "__Secure-session",
        " __Host-session ",
    ] {
        let (code, body) = status_with_cookie(&server, &format!("{name}={attacker}")).await;
        if name.trim() == SECURE_COOKIE {
            // Surrounding whitespace is not part of the name (RFC 6265 §5.2).
            assert_eq!((code, body["user"].as_str()), (200, Some("mallory")));
        } else {
            assert_eq!(
                code, 401,
                "cookie {name:?} was taken as the session: {body}"
            );
        }
    }

    // None of the refused requests ended either session.
    for (token, user) in [(&victim, "demo"), (&attacker, "mallory")] {
        let (code, body) = status_with_cookie(&server, &format!("{SECURE_COOKIE}={token}")).await;
        assert_eq!((code, body["user"].as_str()), (200, Some(user)), "{body}");
    }
}

/// Every line the server logged is one JSON object: no input could start a
/// forged line.
fn assert_log_lines_are_json(server: &Server) {
    for line in server.logs().lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "a log line is not JSON (log injection?): {line:?}"
        );
    }
}

#[tokio::test]
async fn cr_lf_in_echoed_values_never_reaches_a_header_or_a_log_line() {
    let server = Server::start_secure(&[]);
    let key = api_key(&server);
    let c = client();

    // A user name with CR/LF (it would reach the audit log and error pages).
    for json in [true, false] {
        let username = "demo\r\nSet-Cookie: evil=1\r\n{\"event\":\"forged\"}";
        let req = c.post(server.at("/login"));
        let req = if json {
            req.json(&serde_json::json!({"username": username, "password": "wrong-password"}))
        } else {
            req.form(&[("username", username), ("password", "wrong-password")])
        };
        let res = req.send().await.unwrap();
        // Refused as malformed before it reaches the limiter or the log.
        assert_eq!(res.status(), 400);
        for (name, value) in res.headers() {
            let v = value.to_str().unwrap_or("");
            assert!(!v.contains("evil"), "injected header {name}: {v}");
        }
        assert!(res.headers().get("set-cookie").is_none());
        let body = res.text().await.unwrap();
        assert!(!body.contains("Set-Cookie: evil"), "{body}");
    }

    // The sign-out reason is a code from the query string: unknown values
    // are dropped, never echoed.
    let out = raw::send(
        server.port,
        raw::get(
            "/login?reason=%0D%0ASet-Cookie:%20evil=1%0D%0A%3Cscript%3E",
            &[],
        ),
    )
    .await;
    assert_eq!(out.status(), Some(200), "{out:?}");
    assert!(out.headers().iter().all(|(_, v)| !v.contains("evil")));
    let page = out.body_text();
    assert!(
        !page.contains("evil") && !page.contains("<script>"),
        "{page}"
    );

    // A bare CR or LF inside a header value is a malformed request.
    for header in [
        &b"X-Test: a\rSet-Cookie: evil=1"[..],
        &b"X-Test: a\nSet-Cookie: evil=1"[..],
        &b"X-Test: a\x00b"[..],
    ] {
        let out = raw::send(server.port, raw::get("/session", &[header])).await;
        assert_refused("CR/LF/NUL in a header", &out);
        assert!(out.headers().iter().all(|(_, v)| !v.contains("evil")));
    }

    // Encoded CR/LF in a path segment that is echoed back as a handle.
    let out = raw::send(
        server.port,
        raw::get("/sessions/%0D%0ASet-Cookie:%20evil=1/x", &[]),
    )
    .await;
    assert_refused("CR/LF in a path", &out);
    assert!(out.headers().iter().all(|(_, v)| !v.contains("evil")));

    // /v1: a user id with control characters could be forwarded in
    // X-Tessera-User by forward auth; it is refused at creation.
    for user_id in ["bob\r\nX-Evil: 1", "bob\nX-Evil: 1", "bob\u{85}x", "bob\0"] {
        let res = c
            .post(server.at("/v1/sessions"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"user_id": user_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "user id {user_id:?} was accepted");
    }
    // CR/LF in the user agent: refused too (it is shown and logged).
    let res = c
        .post(server.at("/v1/sessions"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"user_id": "bob", "user_agent": "ua\r\nX-Evil: 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = c
        .post(server.at("/v1/sessions"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"user_id": "bob", "user_agent": "ua X-Evil: 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let issued: Value = res.json().await.unwrap();
    let token = issued["token"].as_str().unwrap();
    let res = c
        .get(server.at("/v1/auth/verify"))
        .header("cookie", format!("{SECURE_COOKIE}={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-evil").is_none());
    assert_eq!(res.headers()["x-tessera-user"], "bob");

    // A sign-in form cannot choose where it redirects (no open redirect).
    let res = c
        .post(server.at("/login"))
        .form(&[
            ("username", "demo"),
            ("password", server.demo_password()),
            ("next", "https://evil.example/"),
            ("redirect", "//evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/");

    assert_log_lines_are_json(&server);
    assert!(
        !server.logs().contains(server.demo_password()),
        "a password reached the log"
    );
}
