//! Concurrency through real HTTP (docs/design.md, invariant 8).

use std::sync::Arc;

use tessera::SessionManager;
use tessera::store::{MemoryStore, Store};
use tessera::time::{ManualClock, Timestamp};
use tessera_axum::SessionLayer;
use tessera_sql::SqlStore;
use tokio::task::JoinSet;

use crate::common::*;

const N: u64 = 1_000;

async fn app_on(store: Arc<dyn Store>) -> String {
    let manager = SessionManager::builder_from_arc(store)
        .policy(policy())
        .clock(ManualClock::new(Timestamp::from_millis(START)))
        .build()
        .unwrap();
    serve(routes().layer(SessionLayer::new(manager))).await
}

async fn thousand_increments(base: String) {
    let client = client();
    let cookie_name = tessera::cookie::CookieConfig::default().name().to_owned();
    let r = client
        .post(format!("{base}/login/alice"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = session_token(r.headers(), &cookie_name).unwrap();
    let cookie = format!("{cookie_name}={token}");
    let csrf = client
        .get(format!("{base}/csrf"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let mut tasks = JoinSet::new();
    for _ in 0..N {
        let (client, base, cookie, csrf) =
            (client.clone(), base.clone(), cookie.clone(), csrf.clone());
        tasks.spawn(async move {
            client
                .post(format!("{base}/counter"))
                .header("cookie", cookie)
                .header("x-csrf-token", csrf)
                .header("sec-fetch-site", "same-origin")
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let r = client
        .get(format!("{base}/counter"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), N.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_increments_count_a_thousand_in_memory() {
    thousand_increments(app_on(Arc::new(MemoryStore::new())).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_increments_count_a_thousand_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
    let store = SqlStore::connect(&url).await.unwrap();
    thousand_increments(app_on(Arc::new(store)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_setting_different_keys_both_survive() {
    let app = TestApp::start().await;
    let token = app.login("alice").await;
    let csrf = app.csrf(&token).await;
    // Both requests load the same version before either commits (the
    // handler waits on a barrier), so a last-writer-wins save would lose one.
    let a = app.post("/together/a/1", Some(&token), Some(&csrf)).send();
    let b = app.post("/together/b/2", Some(&token), Some(&csrf)).send();
    let (a, b) = tokio::join!(a, b);
    assert_eq!(a.unwrap().status(), 200);
    assert_eq!(b.unwrap().status(), 200);
    for (key, value) in [("a", "1"), ("b", "2")] {
        let r = app
            .get(&format!("/get/{key}"), Some(&token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), value);
    }
}
