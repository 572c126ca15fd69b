//! A second, hostile site on loopback: a tiny HTTP server that answers
//! every request with one HTML page (a form that submits itself to the
//! tessera server). It has no CSP, so its inline script runs.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

pub struct Attacker {
    pub port: u16,
    page: Arc<Mutex<String>>,
    task: JoinHandle<()>,
}

impl Attacker {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let page = Arc::new(Mutex::new(String::new()));
        let shared = page.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    continue;
                };
                let page = shared.clone();
                tokio::spawn(async move {
                    // Read the request head; the page is the same for any.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = page.lock().await.clone();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Cache-Control: no-store\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { port, page, task }
    }

    /// Serves a page that auto-submits a POST form with `fields` to `action`.
    pub async fn auto_submit(&self, action: &str, fields: &[(&str, &str)]) {
        let inputs: String = fields
            .iter()
            .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{v}\">"))
            .collect();
        *self.page.lock().await = format!(
            "<!doctype html><html><body><h1>You won a prize</h1>\
             <form id=\"f\" method=\"post\" action=\"{action}\">{inputs}</form>\
             <script>document.getElementById('f').submit();</script></body></html>"
        );
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
