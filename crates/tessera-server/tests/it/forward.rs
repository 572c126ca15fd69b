//! Forward auth and cross-site requests: a forwarded unsafe method must pass
//! the Origin / Sec-Fetch-Site check, or get 403 whatever the cookie.

use crate::common::{Server, client, cookie_header, demo_login, get_text};

#[tokio::test]
async fn forwarded_unsafe_requests_from_other_sites_are_refused() {
    let server = Server::start(&[("TESSERA_TRUSTED_ORIGINS", "https://admin.example.com")]);
    let s = demo_login(&server).await;
    let verify = |headers: &[(&str, &str)]| {
        let mut rb = client()
            .get(server.at("/v1/auth/verify"))
            .header("cookie", cookie_header(&s.token));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send()
    };
    let host = [("x-forwarded-host", "app.example.com")];

    for method_header in ["x-forwarded-method", "x-original-method"] {
        for method in ["POST", "PUT", "PATCH", "DELETE", "post"] {
            let m = [(method_header, method)];
            let refused: &[&[(&str, &str)]] = &[
                &[("sec-fetch-site", "cross-site")],
                &[
                    ("sec-fetch-site", "same-site"),
                    ("origin", "https://other.example.com"),
                ],
                &[("origin", "https://evil.example")],
                &[("origin", "null")],
            ];
            for extra in refused {
                let headers: Vec<_> = m
                    .iter()
                    .chain(host.iter())
                    .chain(extra.iter())
                    .copied()
                    .collect();
                let res = verify(&headers).await.unwrap();
                assert_eq!(res.status(), 403, "{headers:?}");
                assert!(res.headers().get("x-tessera-user").is_none());
                let body: serde_json::Value = res.json().await.unwrap();
                assert_eq!(body["error"], "csrf_rejected", "{headers:?}");
            }
            let allowed: &[&[(&str, &str)]] = &[
                &[("sec-fetch-site", "same-origin")],
                &[("origin", "https://app.example.com")],
                &[
                    ("sec-fetch-site", "same-site"),
                    ("origin", "https://admin.example.com"),
                ],
                // No Fetch Metadata and no Origin: not a browser's cross-site
                // request.
                &[],
            ];
            for extra in allowed {
                let headers: Vec<_> = m
                    .iter()
                    .chain(host.iter())
                    .chain(extra.iter())
                    .copied()
                    .collect();
                let res = verify(&headers).await.unwrap();
                assert_eq!(res.status(), 200, "{headers:?}");
                assert_eq!(res.headers()["x-tessera-user"], "demo");
            }
        }
    }

    // Without X-Forwarded-Host the Host header is the reference.
    let origin = server.url.trim_end_matches('/').to_owned();
    let res = verify(&[("x-forwarded-method", "POST"), ("origin", &origin)])
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A foreign origin is refused even with a valid cookie and no host
    // header from the proxy.
    let res = verify(&[
        ("x-forwarded-method", "DELETE"),
        ("origin", "http://evil.example"),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), 403);

    // Safe methods (links, navigations) pass: the check is for unsafe ones.
    for method in ["GET", "HEAD", "OPTIONS"] {
        let res = verify(&[
            ("x-forwarded-method", method),
            ("sec-fetch-site", "cross-site"),
        ])
        .await
        .unwrap();
        assert_eq!(res.status(), 200, "{method}");
    }
    // An unknown method is unsafe.
    let res = verify(&[
        ("x-forwarded-method", "PROPFIND"),
        ("sec-fetch-site", "cross-site"),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), 403);

    // Refused requests are audited and counted, and the session is intact.
    let logs = server.logs();
    for code in ["cross_site", "untrusted_same_site", "foreign_origin"] {
        assert!(
            logs.contains(&format!("forward auth: {code}")),
            "{code}: {logs}"
        );
    }
    let metrics = get_text(&server, "/metrics").await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("tessera_csrf_rejections_total "))
        .unwrap();
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    // 2 method headers × 5 methods × 4 refusals, then DELETE and PROPFIND.
    assert_eq!(n, 42, "{line}");
    assert_eq!(crate::common::status(&server, &s.token).await.0, 200);
}

#[tokio::test]
async fn conflicting_method_headers_are_refused_and_do_not_touch() {
    let mut server = Server::start(&[]);
    let s = demo_login(&server).await;
    let url = server.at("/v1/auth/verify");
    let verify = |headers: &[(&str, &str)]| {
        let mut rb = client()
            .get(url.as_str())
            .header("cookie", cookie_header(&s.token));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send()
    };
    // Past the touch step, so an accepted request would move the deadline.
    server.advance(std::time::Duration::from_secs(5 * 60));
    let before = crate::common::status(&server, &s.token).await.1["idle_expires_at"].clone();
    server.advance(std::time::Duration::from_secs(5 * 60));

    // nginx sets X-Original-Method; the client adds X-Forwarded-Method: GET
    // to pass a cross-site post off as a link.
    let forged: &[&[(&str, &str)]] = &[
        &[
            ("x-original-method", "POST"),
            ("x-forwarded-method", "GET"),
            ("sec-fetch-site", "cross-site"),
        ],
        &[
            ("x-forwarded-method", "POST"),
            ("x-original-method", "GET"),
            ("sec-fetch-site", "cross-site"),
        ],
        // Two lines of one header that disagree.
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-method", "DELETE"),
        ],
        // URIs must agree too.
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/app/a"),
            ("x-original-uri", "/app/b"),
        ],
    ];
    for headers in forged {
        let res = verify(headers).await.unwrap();
        assert_eq!(res.status(), 400, "{headers:?}");
        assert!(res.headers().get("x-tessera-user").is_none());
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(
            body["error"], "conflicting_forwarded_headers",
            "{headers:?}"
        );
    }
    // Refused before the session lookup: the idle deadline did not move.
    assert_eq!(
        crate::common::status(&server, &s.token).await.1["idle_expires_at"],
        before
    );
    let logs = server.logs();
    assert!(
        logs.contains("forward auth: conflicting_method (conflicting methods)"),
        "{logs}"
    );
    assert!(
        logs.contains("forward auth: conflicting_method (GET conflicting URIs)"),
        "{logs}"
    );

    // Agreeing headers (any case) are one method.
    let res = verify(&[
        ("x-original-method", "post"),
        ("x-forwarded-method", "POST"),
        ("x-forwarded-uri", "/app/transfer"),
        ("x-original-uri", "/app/transfer"),
        ("sec-fetch-site", "same-origin"),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let res = verify(&[
        ("x-original-method", "POST"),
        ("x-forwarded-method", "POST"),
        ("sec-fetch-site", "cross-site"),
        ("x-original-uri", "/app/transfer"),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        server
            .logs()
            .contains("forward auth: cross_site (POST /app/transfer)"),
        "{}",
        server.logs()
    );
}

#[tokio::test]
async fn a_missing_method_header_is_not_a_safe_get_for_cross_site_requests() {
    let server = Server::start(&[]);
    let s = demo_login(&server).await;
    let verify = |headers: &[(&str, &str)]| {
        let mut rb = client()
            .get(server.at("/v1/auth/verify"))
            .header("cookie", cookie_header(&s.token));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send()
    };
    let host = ("x-forwarded-host", "app.example.com");
    for cross in [
        [("sec-fetch-site", "cross-site"), host],
        [("origin", "https://evil.example"), host],
        [("sec-fetch-site", "same-site"), host],
    ] {
        let res = verify(&cross).await.unwrap();
        assert_eq!(res.status(), 403, "{cross:?}");
        assert!(res.headers().get("x-tessera-user").is_none());
    }
    // Same-origin, a typed URL, or no browser signals at all: signed in.
    for fine in [
        vec![("sec-fetch-site", "same-origin"), host],
        vec![("sec-fetch-site", "none"), host],
        vec![("origin", "https://app.example.com"), host],
        vec![host],
    ] {
        let res = verify(&fine).await.unwrap();
        assert_eq!(res.status(), 200, "{fine:?}");
        assert_eq!(res.headers()["x-tessera-user"], "demo");
    }
}

#[tokio::test]
async fn forward_auth_sees_every_cookie_pair() {
    let server = Server::start(&[]);
    let victim = demo_login(&server).await;
    let key = server.api_key();
    let planted = crate::common::create_session(&server, &key, "mallory").await;
    let planted = planted["token"].as_str().unwrap().to_owned();
    let verify = |cookie: String| {
        client()
            .get(server.at("/v1/auth/verify"))
            .header("cookie", cookie)
            .send()
    };
    // The planted cookie first, then enough junk to hide the victim's from
    // a parser that stops after 64 pairs.
    for junk in [64, 3000] {
        let cookie = format!(
            "session={planted}; {}session={}",
            "j=1; ".repeat(junk),
            victim.token
        );
        let res = verify(cookie).await.unwrap();
        assert_eq!(res.status(), 401, "{junk} junk pairs");
        assert!(res.headers().get("x-tessera-user").is_none());
    }
    // Alone behind the same junk, the victim's cookie is found.
    let res = verify(format!("{}session={}", "j=1; ".repeat(3000), victim.token))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tessera-user"], "demo");
}
