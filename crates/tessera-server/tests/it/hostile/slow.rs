//! Slow clients (slowloris): partial headers and dribbled bodies.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::{sign_in, status_with_cookie};
use super::raw;
use crate::common::{SECURE_COOKIE, Server, client};

const SLOW_HEADERS: usize = 200;
const SLOW_BODIES: usize = 50;

/// Opens a connection and sends a request head that never ends.
async fn partial_head(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET /session HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        .await
        .unwrap();
    s
}

/// Opens a connection and announces a body far over the body limit, and
/// sends none of it.
async fn announced_huge_body(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 1000000000000\r\n\r\n",
    )
    .await
    .unwrap();
    s
}

/// Opens a connection and sends a complete head announcing a body that
/// never fully arrives.
async fn partial_body(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"username\":",
    )
    .await
    .unwrap();
    s
}

/// Waits (bounded) until `cond` holds; panics with `what` otherwise.
async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn slow_clients_do_not_starve_others_and_are_released() {
    let server = Server::start_secure(&[]);
    let token = sign_in(&server).await;
    let cookie = format!("{SECURE_COOKIE}={token}");
    // Warm up first: the store's connection pool opens its connections
    // (and their files) on demand, which must not count as held sockets.
    for _ in 0..5 {
        assert_eq!(status_with_cookie(&server, &cookie).await.0, 200);
    }
    let baseline = server.open_fds();

    let mut held = Vec::new();
    for _ in 0..SLOW_HEADERS {
        held.push(partial_head(server.port).await);
    }
    for _ in 0..SLOW_BODIES {
        held.push(partial_body(server.port).await);
    }
    // Everything above reached the server.
    eventually(
        &format!("the server accepted the slow connections (baseline {baseline})"),
        Duration::from_secs(30),
        // A few of the baseline's descriptors may be the sign-in
        // client's connection, closing meanwhile.
        || server.open_fds() + 4 >= baseline + SLOW_HEADERS + SLOW_BODIES,
    )
    .await;

    // Valid sessions are still served while the slow clients hang on.
    for _ in 0..20 {
        let (code, body) = status_with_cookie(&server, &cookie).await;
        assert_eq!(code, 200, "{body}");
    }

    // A client that leaves frees what it held.
    drop(held);
    // Released: back near the baseline. The slack (a few pooled store
    // connections opened under load, each a database file and its WAL)
    // is far below the 250 sockets held, so a leak still fails.
    eventually(
        "the server released the slow clients' sockets",
        Duration::from_secs(30),
        || server.open_fds() <= baseline + 16,
    )
    .await;
    let (code, _) = status_with_cookie(&server, &cookie).await;
    assert_eq!(code, 200);
}

/// Opens a connection and sends nothing at all.
async fn silent(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

/// Reads until the server closes the connection (bounded by `limit`);
/// what arrived, or `None` if the connection was still open.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

fn api_key(server: &Server) -> String {
    let (ok, out, err) = server.cli(&["api-key", "create", "backend"], None);
    assert!(ok, "{err}");
    out.trim().to_owned()
}

/// The sessions the `/v1` API lists for `user`.
async fn sessions_of(server: &Server, key: &str, user: &str) -> usize {
    let list: serde_json::Value = client()
        .get(server.at(&format!("/v1/users/{user}/sessions")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list.as_array().map(Vec::len).expect("a list")
}

/// The server closes a connection whose request head or body does not
/// arrive, with the shipped defaults (10 s for the head, 30 s for the
/// body; `axum::serve` set neither, and hyper's head timeout needs a timer
/// it was not given), and refuses a `Content-Length` over the body limit
/// without waiting for the bytes. Else a slowloris client holds a socket and
/// a task for ever.
#[tokio::test]
async fn unfinished_requests_are_timed_out() {
    let server = Server::start_secure(&[]);
    let port = server.port;
    let cases = (0..4).map(|case| {
        tokio::spawn(async move {
            let mut s = match case {
                0 => partial_head(port).await,
                1 => partial_body(port).await,
                2 => announced_huge_body(port).await,
                _ => silent(port).await,
            };
            // Bounded: a minute is twice the longest default timeout.
            let got = read_until_closed(&mut s, Duration::from_secs(60)).await;
            (case, got)
        })
    });
    for case in cases {
        let (case, got) = case.await.unwrap();
        let got = got.unwrap_or_else(|| {
            panic!("case {case}: the server kept an unfinished request open for a minute")
        });
        let got = got.to_ascii_lowercase();
        match case {
            // The head never ended, or never started: closed, no answer.
            0 | 3 => assert_eq!(got, "", "case {case}"),
            // The body stopped coming: 408, and the connection is closed.
            1 => {
                assert!(got.starts_with("http/1.1 408"), "{got}");
                assert!(got.contains("connection: close"), "{got}");
            }
            _ => {
                assert!(got.starts_with("http/1.1 413"), "{got}");
                assert!(got.contains("connection: close"), "{got}");
            }
        }
    }
    let (code, _) = status_with_cookie(&server, "").await;
    assert_eq!(code, 401, "the server still answers");
}

/// A body trickled a byte at a time, so that no single read waits long,
/// is still cut off once the whole body has taken longer than
/// `request_body_timeout`: 408 with `Connection: close`, and the request
/// it carried (a session for `trickle`) is not executed.
#[tokio::test]
async fn trickled_body_is_cut_off_with_408_and_changes_nothing() {
    let server = Server::start_secure(&[("TESSERA_REQUEST_BODY_TIMEOUT", "2s")]);
    let key = api_key(&server);
    // A valid request, padded so that at 5 bytes a second it would take
    // a minute to arrive.
    let body = format!("{{\"user_id\":\"trickle\"}}{}", " ".repeat(300));
    let head = format!(
        "POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let stream = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        for b in body.bytes() {
            if wr.write_all(&[b]).await.is_err() {
                return true; // the server closed the connection
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the trickled request was never cut off");
    writer.abort();
    let got = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(got.starts_with("http/1.1 408"), "{got}");
    assert!(got.contains("connection: close"), "{got}");
    assert!(got.contains("\"request_timeout\""), "{got}");
    assert_eq!(sessions_of(&server, &key, "trickle").await, 0);

    // The same request sent at once is served: the deadline, not the
    // request, refused it.
    let res = client()
        .post(server.at("/v1/sessions"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"user_id": "trickle"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(sessions_of(&server, &key, "trickle").await, 1);
}

/// A `Content-Length` over `body_limit`, sent with the head and no body:
/// 413 at once (not after a wait for bytes that never come), with
/// `Connection: close`, for the API and the site; nothing is created and
/// nobody is signed in. A chunked body cut at the limit also closes.
#[tokio::test]
async fn announced_oversized_body_gets_413_at_once_with_connection_close() {
    let server = Server::start_secure(&[]);
    let key = api_key(&server);
    let requests = [
        format!(
            "POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: 65537\r\n\r\n"
        ),
        String::from(
            "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000000000\r\n\r\n",
        ),
    ];
    for (i, request) in requests.iter().enumerate() {
        let mut s = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        // Well under the 30 s body timeout: the answer cannot be the
        // deadline's.
        let got = read_until_closed(&mut s, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("request {i}: no answer without the body"));
        let lower = got.to_ascii_lowercase();
        assert!(lower.starts_with("http/1.1 413"), "request {i}: {got}");
        assert!(lower.contains("connection: close"), "request {i}: {got}");
        assert!(!lower.contains("set-cookie"), "request {i}: {got}");
        assert!(lower.contains("x-content-type-options: nosniff"), "{got}");
    }
    assert_eq!(sessions_of(&server, &key, "bob").await, 0);

    // Chunked: the size is not announced; cut at the limit, then closed.
    let mut req = format!(
        "POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let chunk = format!(
        "{{\"user_id\":\"bob\",\"data\":{{\"x\":\"{}\"}}}}",
        "y".repeat(70_000)
    );
    req.extend_from_slice(format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len()).as_bytes());
    let out = raw::send(server.port, req).await;
    assert_eq!(out.status(), Some(413), "{out:?}");
    assert!(
        out.headers()
            .contains(&(String::from("connection"), String::from("close"))),
        "{out:?}"
    );
    assert_eq!(sessions_of(&server, &key, "bob").await, 0);
}

/// SIGTERM stops accepting and ends the process cleanly while slow and
/// idle clients are still connected: graceful shutdown does not wait on a
/// client that never finishes its request (bounded by the timeouts).
#[tokio::test]
async fn sigterm_shuts_down_cleanly_with_slow_clients_connected() {
    let mut server = Server::start_secure(&[]);
    let token = sign_in(&server).await;
    let (code, _) = status_with_cookie(&server, &format!("{SECURE_COOKIE}={token}")).await;
    assert_eq!(code, 200);
    let _held = [
        partial_head(server.port).await,
        partial_body(server.port).await,
        silent(server.port).await,
    ];
    server.terminate();
    eventually(
        "the server exited after SIGTERM",
        Duration::from_secs(60),
        || server.exit_status().is_some(),
    )
    .await;
    let status = server.exit_status().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

/// `max_connections` bounds what the process holds: beyond it, clients
/// wait in the kernel's accept queue, not in the server's memory; when the
/// held ones leave, the waiting ones are served.
#[tokio::test]
async fn connections_beyond_max_connections_wait_outside_the_process() {
    const CAP: usize = 5;
    let server = Server::start_secure(&[("TESSERA_MAX_CONNECTIONS", "5")]);
    let baseline = server.open_fds();
    let mut held = Vec::new();
    for _ in 0..30 {
        held.push(partial_head(server.port).await);
    }
    // The first CAP are taken in.
    eventually(
        "the server accepted the first connections",
        Duration::from_secs(30),
        || server.open_fds() + 2 >= baseline + CAP,
    )
    .await;
    // Give it time to (wrongly) take more; never a timing assertion: a
    // slow machine can only make this check pass, not fail.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open = server.open_fds();
    assert!(
        open <= baseline + CAP + 2,
        "{open} descriptors open with {CAP} allowed connections (baseline {baseline})"
    );
    // The queued ones are served once the held ones leave.
    drop(held);
    let (code, _) = status_with_cookie(&server, "").await;
    assert_eq!(code, 401);
}
