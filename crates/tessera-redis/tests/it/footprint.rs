//! What a signed-in session with small data costs in Redis, key by key
//! (`MEMORY USAGE ... SAMPLES 0`), with the default key prefix: the figures
//! of the README's "Cost per signed-in session" table. Fails if the layout
//! grows past them.
//!
//! A user's first session pays for the whole user index key; a further
//! session of the same user pays for its own session and handle keys and
//! for what its entry adds to the index. Both are printed; the budget
//! applies to the first, the larger.

use crate::common;

use fred::prelude::*;
use tessera::record::SessionRecord;
use tessera::store::Store;
use tessera::testkit::sample_record;
use tessera_redis::{RedisOptions, RedisStore};

/// Bytes of the session key, the handle record and the whole user index
/// for a user's first signed-in session, measured on Redis 7.0 (the
/// README's table). The issue's target is 300 B; the README ("Cost per
/// signed-in session") explains why this layout cannot reach it.
const BUDGET: i64 = 600;

async fn usage(client: &Client, key: &str) -> i64 {
    client
        .custom(
            fred::cmd!("MEMORY"),
            vec![
                "USAGE".to_owned(),
                key.to_owned(),
                "SAMPLES".into(),
                "0".into(),
            ],
        )
        .await
        .unwrap()
}

/// A signed-in record like the bench's: its user id and small data.
fn record(user: &str) -> SessionRecord {
    let (_, mut record) = sample_record(Some(user));
    record.data.clear();
    record.data.insert("counter".into(), 1.into());
    record
}

#[tokio::test]
async fn a_signed_in_session_costs_the_documented_bytes() {
    let url = common::url("TESSERA_TEST_REDIS_URL");
    let store = RedisStore::connect(&url, RedisOptions::default())
        .await
        .unwrap();
    let node = &common::nodes(&url)[0];
    let (host, port) = node.rsplit_once(':').unwrap();
    let client = Builder::from_config(Config {
        server: ServerConfig::new_centralized(host, port.parse().unwrap()),
        ..Config::default()
    })
    .build()
    .unwrap();
    client.init().await.unwrap();
    let user = format!("u{}", &tessera::testkit::unique_user("f")[2..12]);
    let first = record(&user);
    store.create(&first).await.unwrap();
    let keys = [
        ("session", store.session_key(&first.hash)),
        ("handle record", store.handle_key(&first.handle)),
        ("user index", store.user_key(&user)),
    ];
    let mut total = 0;
    for (what, key) in &keys {
        let bytes = usage(&client, key).await;
        eprintln!("footprint: first session: {what} {key}: {bytes} B");
        assert!(bytes > 0, "{what} key exists");
        total += bytes;
    }
    eprintln!("footprint: first session: total {total} B");

    // A second session of the same user: its own keys, and what its entry
    // adds to the user index.
    let index_before = usage(&client, &store.user_key(&user)).await;
    let second = record(&user);
    store.create(&second).await.unwrap();
    let session = usage(&client, &store.session_key(&second.hash)).await;
    let handle = usage(&client, &store.handle_key(&second.handle)).await;
    let index = usage(&client, &store.user_key(&user)).await - index_before;
    let further = session + handle + index;
    eprintln!(
        "footprint: further session: session {session} B + handle record {handle} B \
         + user index entry {index} B = {further} B"
    );

    store
        .delete_by_user(&user, None, tessera::Revocation::Admin)
        .await
        .unwrap();
    assert!(
        total <= BUDGET,
        "a user's first session costs {total} B, over {BUDGET} B"
    );
}
