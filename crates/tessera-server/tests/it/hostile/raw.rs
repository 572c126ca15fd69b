//! Raw HTTP/1.1 over TCP, for requests no client library would send.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bounds a hang; never a timing assertion.
pub const WAIT: Duration = Duration::from_secs(30);

/// What the server did with a raw request.
#[derive(Debug)]
pub enum Outcome {
    /// A complete response head (and whatever body arrived before close).
    Response {
        status: u16,
        head: String,
        body: Vec<u8>,
    },
    /// The server closed (or reset) the connection without a response.
    Closed,
}

impl Outcome {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Response { status, .. } => Some(*status),
            Self::Closed => None,
        }
    }

    /// Header lines of the response, lower-cased names.
    pub fn headers(&self) -> Vec<(String, String)> {
        match self {
            Self::Response { head, .. } => head
                .split("\r\n")
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect(),
            Self::Closed => Vec::new(),
        }
    }

    pub fn body_text(&self) -> String {
        match self {
            Self::Response { body, .. } => String::from_utf8_lossy(body).into_owned(),
            Self::Closed => String::new(),
        }
    }
}

/// Sends `request` (written concurrently with reading, so a server that
/// answers and closes before reading everything is seen answering) and
/// reads until the server closes the connection. Send `Connection: close`.
pub async fn send(port: u16, request: Vec<u8>) -> Outcome {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The server may refuse and close mid-request: a write error is
        // one of the outcomes, not a test failure.
        let _ = wr.write_all(&request).await;
        let _ = wr.flush().await;
        wr
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server neither answered nor closed within {WAIT:?}"
    );
    drop(writer.await);
    parse(&buf)
}

fn parse(buf: &[u8]) -> Outcome {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Outcome::Closed;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    Outcome::Response {
        status,
        head,
        body: buf[end + 4..].to_vec(),
    }
}

/// A GET with extra raw header lines (each without CRLF).
pub fn get(path: &str, headers: &[&[u8]]) -> Vec<u8> {
    let mut r =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n").into_bytes();
    for h in headers {
        r.extend_from_slice(h);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r
}
