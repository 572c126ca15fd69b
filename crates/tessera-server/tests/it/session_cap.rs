//! The per-user session cap over real HTTP: `max_sessions_per_user` with
//! `session_limit_action`, raced by concurrent sign-ins.

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::common::{Server, client, list_sessions, try_login};

/// Fires `n` concurrent `POST /v1/sessions` for `user`; the statuses and
/// bodies.
async fn race_creations(server: &Server, key: &str, user: &str, n: usize) -> Vec<(u16, Value)> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let url = server.at("/v1/sessions");
        let key = key.to_owned();
        let user = user.to_owned();
        set.spawn(async move {
            let res = client()
                .post(url)
                .bearer_auth(key)
                .json(&json!({"user_id": user}))
                .send()
                .await
                .unwrap();
            let code = res.status().as_u16();
            (code, res.json::<Value>().await.unwrap_or(Value::Null))
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

#[tokio::test]
async fn thirty_racing_creations_with_evict_oldest_leave_exactly_three() {
    let server = Server::start(&[("TESSERA_MAX_SESSIONS_PER_USER", "3")]);
    let key = server.api_key();
    let outs = race_creations(&server, &key, "alice", 30).await;
    assert!(outs.iter().all(|(code, _)| *code == 201), "{outs:?}");
    let live = list_sessions(&server, &key, "alice").await;
    assert_eq!(live.len(), 3, "{live:?}");
    // The evicted ones report why they ended.
    let survivors: Vec<&Value> = live.iter().map(|s| &s["handle"]).collect();
    let evicted: Vec<&(u16, Value)> = outs
        .iter()
        .filter(|(_, b)| !survivors.contains(&&b["handle"]))
        .collect();
    assert_eq!(evicted.len(), 27);
    let token = evicted[0].1["token"].as_str().unwrap();
    let res = client()
        .post(server.at("/v1/requests/check"))
        .bearer_auth(&key)
        .json(&json!({"method": "GET", "cookie": format!("session={token}")}))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["outcome"], "no_session", "{body}");
    assert_eq!(body["reason"], "revoked", "{body}");
}

#[tokio::test]
async fn thirty_racing_creations_with_refuse_new_admit_exactly_three() {
    let server = Server::start(&[
        ("TESSERA_MAX_SESSIONS_PER_USER", "3"),
        ("TESSERA_SESSION_LIMIT_ACTION", "refuse_new"),
    ]);
    let key = server.api_key();
    let outs = race_creations(&server, &key, "alice", 30).await;
    let created = outs.iter().filter(|(c, _)| *c == 201).count();
    let refused: Vec<&(u16, Value)> = outs.iter().filter(|(c, _)| *c == 409).collect();
    assert_eq!(created, 3, "{outs:?}");
    assert_eq!(refused.len(), 27, "{outs:?}");
    assert!(
        refused.iter().all(|(_, b)| b["error"] == "session_limit"),
        "{refused:?}"
    );
    let live = list_sessions(&server, &key, "alice").await;
    assert_eq!(live.len(), 3, "{live:?}");

    // The client-API sign-in and the site sign-in are refused the same
    // way, and leave the three sessions as they were.
    let res = client()
        .post(server.at("/v1/requests/login"))
        .bearer_auth(&key)
        .json(&json!({"user_id": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "session_limit", "{body}");
    let (ok, _, err) = server.cli(
        &["user", "add", "alice", "--password-stdin"],
        Some("alice-password-1\n"),
    );
    assert!(ok, "{err}");
    let res = try_login(&server, "alice", "alice-password-1").await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "session_limit", "{body}");
    let after = list_sessions(&server, &key, "alice").await;
    assert_eq!(after, live, "a refused sign-in changes nothing");
}

#[tokio::test]
async fn an_unknown_session_limit_action_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("tessera.db").display());
    let (ok, _, err) = crate::common::run_cli_with(
        &store,
        &["serve", "--listen", "127.0.0.1:0"],
        None,
        &[("TESSERA_SESSION_LIMIT_ACTION", "evict_newest")],
    );
    assert!(!ok);
    let err = err.to_ascii_lowercase();
    assert!(err.contains("session_limit_action"), "{err}");
    assert!(
        err.contains("refuse_new"),
        "the error names the valid values: {err}"
    );
}

/// Two server instances sharing one Redis Cluster store: 30 creations for
/// one user raced across both, with `refuse_new` and a cap of 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_redis_cluster_admit_exactly_three() {
    let url = crate::backends::required_env("TESSERA_TEST_REDIS_CLUSTER_URL");
    let prefix = format!("{}:", crate::backends::unique("tessera-cap"));
    let shared = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", shared.path().join("users.db").display());
    let env = [
        ("TESSERA_DATABASE", database.as_str()),
        ("TESSERA_STORE_KEY_PREFIX", prefix.as_str()),
        ("TESSERA_MAX_SESSIONS_PER_USER", "3"),
        ("TESSERA_SESSION_LIMIT_ACTION", "refuse_new"),
    ];
    let a = Server::start_on(tempfile::tempdir().unwrap(), &url, &env);
    let b = Server::start_on(tempfile::tempdir().unwrap(), &url, &env);
    let (ok, out, err) =
        crate::common::run_cli_with(&url, &["api-key", "create", "backend"], None, &env);
    assert!(ok, "{err}");
    let key = out.trim().to_owned();
    let mut set = JoinSet::new();
    for i in 0..30 {
        let server = if i % 2 == 0 { &a } else { &b };
        let req = client()
            .post(server.at("/v1/sessions"))
            .bearer_auth(&key)
            .json(&json!({"user_id": "alice"}));
        set.spawn(async move {
            let res = req.send().await.unwrap();
            let code = res.status().as_u16();
            (code, res.json::<Value>().await.unwrap_or(Value::Null))
        });
    }
    let mut outs = Vec::new();
    while let Some(r) = set.join_next().await {
        outs.push(r.unwrap());
    }
    let created = outs.iter().filter(|(c, _)| *c == 201).count();
    let refused = outs
        .iter()
        .filter(|(c, b)| *c == 409 && b["error"] == "session_limit")
        .count();
    assert_eq!((created, refused), (3, 27), "{outs:?}");
    assert_eq!(list_sessions(&a, &key, "alice").await.len(), 3);
    assert_eq!(list_sessions(&b, &key, "alice").await.len(), 3);
}
