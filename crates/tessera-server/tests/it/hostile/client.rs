//! reqwest helpers: sign-in, status queries, metrics.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::common::{Server, client, get_text, set_cookie_value};

/// Signs the demo user in (JSON); returns the token.
pub async fn sign_in(server: &Server) -> String {
    let res = client()
        .post(server.at("/login"))
        .json(&serde_json::json!({"username": "demo", "password": server.demo_password()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "sign-in failed");
    set_cookie_value(res.headers(), server.cookie_name()).expect("sign-in sets the cookie")
}

/// `GET /session` with a raw `Cookie` header value; (status, JSON body).
pub async fn status_with_cookie(server: &Server, cookie: &str) -> (u16, Value) {
    let res = client()
        .get(server.at("/session"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let code = res.status().as_u16();
    (code, res.json().await.unwrap_or(Value::Null))
}

/// The counts of the store-latency histogram per operation: one sample per
/// store call (metrics.rs, `MeteredStore`).
pub async fn store_calls(server: &Server) -> BTreeMap<String, u64> {
    let text = get_text(server, "/metrics").await;
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("tessera_store_latency_seconds_count{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let Some(op) = labels
            .split(',')
            .find_map(|l| l.strip_prefix("op=\""))
            .and_then(|l| l.strip_suffix('"'))
        else {
            continue;
        };
        // The background sweeper and readiness probes are not requests.
        if op == "purge_expired" || op == "ping" {
            continue;
        }
        let n: f64 = value.trim().parse().unwrap();
        calls.insert(op.to_owned(), n as u64);
    }
    calls
}

/// `after - before`, per operation.
pub fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}
