//! Slow clients (slowloris): partial headers and dribbled bodies.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{sign_in, status_with_cookie};
use crate::server::{Mode, SECURE_COOKIE, Server};

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
    let server = Server::start(Mode::Secure, &[]);
    let token = sign_in(&server).await;
    let cookie = format!("{SECURE_COOKIE}={token}");
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
    eventually(
        "the server released the slow clients' sockets",
        Duration::from_secs(30),
        || server.open_fds() <= baseline + 4,
    )
    .await;
    let (code, _) = status_with_cookie(&server, &cookie).await;
    assert_eq!(code, 200);
}

/// The server must close a connection whose request head or body does not
/// arrive (hyper's `header_read_timeout`, 30 s by default, only works when
/// a timer is configured, and `axum::serve` configures none; nothing bounds
/// the time to read a body), and must refuse a `Content-Length` over the
/// body limit without waiting for the bytes. Else a slowloris client holds a
/// socket and a task for ever.
#[tokio::test]
#[ignore = "fails: no header/body read timeout; an announced over-limit body is awaited"]
async fn unfinished_requests_are_timed_out() {
    let server = Server::start(Mode::Secure, &[]);
    for case in 0..3 {
        let mut s = match case {
            0 => partial_head(server.port).await,
            1 => partial_body(server.port).await,
            _ => announced_huge_body(server.port).await,
        };
        let mut buf = [0u8; 1024];
        // Bounded: a minute is twice hyper's default header timeout.
        let closed = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "case {case}: the server kept an unfinished request open for a minute"
        );
    }
}
