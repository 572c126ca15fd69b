//! Forward auth through a real nginx (Debian package `nginx`, installed by
//! the test script with `apt-get install -y nginx`), using the shipped
//! example configuration with only the ports changed.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::json;

use crate::common::{Server, client, cookie_header, session_cookie};

const NGINX: &str = "/usr/sbin/nginx";

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master must take its workers down with it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn upstream() -> u16 {
    let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
        let user = headers
            .get("x-tessera-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        format!("hello from the app; user={user}")
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

fn start_nginx(dir: &Path, tessera_port: u16, app_port: u16, port: u16) -> Nginx {
    assert!(
        Path::new(NGINX).exists(),
        "{NGINX} not found: install the Debian package `nginx` (apt-get install -y nginx)"
    );
    let example = include_str!("../../examples/nginx.conf");
    let config = example
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{tessera_port}"))
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{app_port}"))
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"));
    assert_ne!(
        config, example,
        "the example's addresses changed; update this test"
    );
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("nginx.stderr")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx(child)
}

#[tokio::test]
async fn nginx_auth_request_guards_an_upstream() {
    let server = Server::start(&[]);
    let tessera_port: u16 = server
        .url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let app_port = upstream().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let _nginx = start_nginx(dir.path(), tessera_port, app_port, port);
    let base = format!("http://127.0.0.1:{port}");

    // Not signed in (also with a forged identity header): sent to sign in.
    let res = client()
        .get(format!("{base}/app/hello"))
        .header("x-tessera-user", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap();
    assert!(location.ends_with("/login"), "{location}");

    // Sign in through nginx (tessera's own site on the same origin).
    let res = client()
        .post(format!("{base}/login"))
        .json(&json!({"username": "demo", "password": server.demo_password.as_deref().unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let token = session_cookie(res.headers()).unwrap();

    let res = client()
        .get(format!("{base}/app/hello"))
        .header("cookie", cookie_header(&token))
        .header("x-tessera-user", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "hello from the app; user=demo");

    // After revocation the same cookie no longer gets through.
    let (ok, _, err) = server.cli(&["api-key", "create", "ops"], None);
    assert!(ok, "{err}");
    let res = client()
        .post(format!("{base}/logout"))
        .header("cookie", cookie_header(&token))
        .header("accept", "application/json")
        .header("x-csrf-token", {
            let (_, body) = crate::common::status(&server, &token).await;
            body["csrf_token"].as_str().unwrap().to_owned()
        })
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = client()
        .get(format!("{base}/app/hello"))
        .header("cookie", cookie_header(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
}

#[tokio::test]
async fn nginx_refuses_cross_site_unsafe_requests_to_the_upstream() {
    let server = Server::start(&[]);
    let tessera_port: u16 = server
        .url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let app_port = upstream().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let _nginx = start_nginx(dir.path(), tessera_port, app_port, port);
    let base = format!("http://127.0.0.1:{port}");
    let res = client()
        .post(format!("{base}/login"))
        .json(&json!({"username": "demo", "password": server.demo_password.as_deref().unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let token = session_cookie(res.headers()).unwrap();
    let post = |extra: &[(&'static str, String)]| {
        let mut rb = client()
            .post(format!("{base}/app/transfer"))
            .header("cookie", cookie_header(&token))
            .body("amount=1000");
        for (k, v) in extra {
            rb = rb.header(*k, v.as_str());
        }
        rb.send()
    };

    // A form posted from another site: nginx passes tessera's 403 on and
    // the upstream never sees the request.
    for extra in [
        vec![("sec-fetch-site", "cross-site".to_owned())],
        vec![("origin", "http://evil.example".to_owned())],
    ] {
        let res = post(&extra).await.unwrap();
        assert_eq!(res.status(), 403, "{extra:?}");
        assert!(!res.text().await.unwrap().contains("hello from the app"));
    }
    // A client cannot make its post look like a GET by naming the method
    // itself: nginx overwrites it (and tessera refuses disagreeing ones).
    for forged in ["x-forwarded-method", "x-original-method"] {
        let res = post(&[
            (forged, "GET".to_owned()),
            ("sec-fetch-site", "cross-site".to_owned()),
        ])
        .await
        .unwrap();
        assert_eq!(res.status(), 403, "{forged}");
        assert!(!res.text().await.unwrap().contains("hello from the app"));
    }
    // The same post from the site itself reaches the upstream as the user
    // (the Origin carries the port, which X-Forwarded-Host keeps).
    for extra in [
        vec![("origin", base.clone())],
        vec![
            ("sec-fetch-site", "same-origin".to_owned()),
            ("origin", base.clone()),
        ],
    ] {
        let res = post(&extra).await.unwrap();
        assert_eq!(res.status(), 200, "{extra:?}");
        assert_eq!(res.text().await.unwrap(), "hello from the app; user=demo");
    }
    // Cross-site GET (a link) still works: only unsafe methods are checked.
    let res = client()
        .get(format!("{base}/app/hello"))
        .header("cookie", cookie_header(&token))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
