//! The client IP behind reverse proxies (src/proxy.rs): forwarding headers
//! count only when the socket peer is a trusted proxy, and then the client
//! is the right-most address that is not one. The test client connects from
//! 127.0.0.1, so trusting 127.0.0.1 makes it "the proxy".

use serde_json::{Value, json};

use crate::common::{Server, client, cookie_header, run_cli_with, session_cookie};

/// Signs the demo user in with extra request headers; the IP the device
/// list then shows for the new session.
async fn device_list_ip(server: &Server, headers: &[(&str, &str)]) -> String {
    let mut rb = client()
        .post(server.at("/login"))
        .json(&json!({"username": "demo", "password": server.demo_password.as_deref().unwrap()}));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let res = rb.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let token = session_cookie(res.headers()).unwrap();
    let list: Vec<Value> = client()
        .get(server.at("/sessions"))
        .header("cookie", cookie_header(&token))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let current = list
        .iter()
        .find(|s| s["current"] == true)
        .unwrap_or(&list[0]);
    current["ip"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn forwarding_headers_change_nothing_without_trusted_proxies() {
    let server = Server::start(&[]);
    let forged = [
        ("x-forwarded-for", "198.51.100.23, 203.0.113.7"),
        ("forwarded", "for=198.51.100.24"),
    ];
    assert_eq!(device_list_ip(&server, &forged).await, "127.0.0.1");
    // Trusting some other network changes nothing for a peer outside it.
    let server = Server::start(&[("TESSERA_TRUSTED_PROXIES", "10.0.0.0/8")]);
    assert_eq!(device_list_ip(&server, &forged).await, "127.0.0.1");
}

#[tokio::test]
async fn the_client_is_the_right_most_untrusted_address() {
    let server = Server::start(&[("TESSERA_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")]);
    // The client wrote 198.51.100.23; the outer proxy appended the client's
    // real address, an inner proxy (10.0.0.1) its own.
    let ip = device_list_ip(
        &server,
        &[("x-forwarded-for", "198.51.100.23, 203.0.113.7, 10.0.0.1")],
    )
    .await;
    assert_eq!(ip, "203.0.113.7");
    // Several field lines are one list.
    let res = client()
        .post(server.at("/login"))
        .header("x-forwarded-for", "198.51.100.23")
        .header("x-forwarded-for", "203.0.113.8")
        .json(&json!({"username": "demo", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The audit line of the failure names the real client, never the
    // forged address.
    let logs = server.logs();
    let failed = logs
        .lines()
        .find(|l| l.contains("\"login_failed\""))
        .expect("a login_failed audit line");
    assert!(failed.contains("\"ip\":\"203.0.113.8\""), "{failed}");
    assert!(!logs.contains("198.51.100.23"), "{logs}");
    // The RFC 7239 header is not read when the proxies maintain
    // X-Forwarded-For (the default): a client could write it.
    let ip = device_list_ip(&server, &[("forwarded", "for=198.51.100.24")]).await;
    assert_eq!(ip, "127.0.0.1");
}

#[tokio::test]
async fn rfc7239_forwarded_is_read_when_configured() {
    let server = Server::start(&[
        ("TESSERA_TRUSTED_PROXIES", "127.0.0.1"),
        ("TESSERA_CLIENT_IP_HEADER", "forwarded"),
    ]);
    let ip = device_list_ip(
        &server,
        &[
            (
                "forwarded",
                "for=198.51.100.23;proto=https, for=\"[2001:db8:cafe::17]:4711\"",
            ),
            ("x-forwarded-for", "198.51.100.25"),
        ],
    )
    .await;
    assert_eq!(ip, "2001:db8:cafe::17");
}

#[tokio::test]
async fn a_forged_left_part_still_meets_the_per_ip_limit() {
    let server = Server::start(&[
        ("TESSERA_TRUSTED_PROXIES", "127.0.0.1"),
        ("TESSERA_LOGIN_MAX_FAILURES_PER_IP", "3"),
        ("TESSERA_LOGIN_MAX_FAILURES_PER_USER", "100"),
    ]);
    let mut statuses = Vec::new();
    for i in 0..6 {
        // A new forged address and a new user name every time: only the
        // proxy-appended right-most address ties the attempts together.
        let res = client()
            .post(server.at("/login"))
            .header("x-forwarded-for", format!("192.0.2.{i}, 203.0.113.9"))
            .json(&json!({"username": format!("user{i}"), "password": "guess"}))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429]);
    // Another client behind the same proxy is not affected.
    let res = client()
        .post(server.at("/login"))
        .header("x-forwarded-for", "203.0.113.10")
        .json(&json!({"username": "user9", "password": "guess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

/// IPv6 clients get one per-IP budget per /64: a client that owns a /64
/// (the usual end-site assignment) cannot rotate through its 2^64
/// addresses to escape the limit, while another /64 keeps its own budget.
#[tokio::test]
async fn ipv6_clients_share_one_budget_per_64() {
    let server = Server::start(&[
        ("TESSERA_TRUSTED_PROXIES", "127.0.0.1"),
        ("TESSERA_LOGIN_MAX_FAILURES_PER_IP", "3"),
        ("TESSERA_LOGIN_MAX_FAILURES_PER_USER", "100"),
    ]);
    let attempt = |ip: String, i: u32| {
        let url = server.at("/login");
        async move {
            client()
                .post(url)
                .header("x-forwarded-for", ip)
                .json(&json!({"username": format!("user{i}"), "password": "guess"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let mut statuses = Vec::new();
    for i in 0..6 {
        // A new address in the same /64 every time.
        statuses.push(attempt(format!("2001:db8:1:2::{:x}", i + 1), i).await);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429]);
    // The next /64 over is another client.
    assert_eq!(attempt(String::from("2001:db8:1:3::1"), 9).await, 401);
}

#[tokio::test]
async fn the_removed_trust_forwarded_for_key_is_refused_with_its_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("t.db").display());
    let (ok, _, err) = run_cli_with(
        &store,
        &["serve", "--listen", "127.0.0.1:0"],
        None,
        &[("TESSERA_TRUST_FORWARDED_FOR", "true")],
    );
    assert!(!ok);
    assert!(err.contains("trust_forwarded_for"), "{err}");
    assert!(err.contains("trusted_proxies"), "{err}");
    // A bad network is named.
    let (ok, _, err) = run_cli_with(
        &store,
        &["serve", "--listen", "127.0.0.1:0"],
        None,
        &[("TESSERA_TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal")],
    );
    assert!(!ok);
    assert!(err.contains("proxy.internal"), "{err}");
}
