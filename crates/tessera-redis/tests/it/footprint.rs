//! What a signed-in session with small data costs in Redis, key by key
//! (`MEMORY USAGE ... SAMPLES 0`), with the default key prefix: the figures
//! of the README's "Keys" table. Fails if the layout grows past them.

use crate::common;

use fred::prelude::*;
use tessera::store::Store;
use tessera::testkit::sample_record;
use tessera_redis::{RedisOptions, RedisStore};

/// Bytes of the session key, the handle index and the user index entry
/// for one signed-in session (the user's first), measured on Redis 7.0.
const BUDGET: i64 = 800;

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
    // A user id like the bench's, and the bench's small data.
    let user = format!("u{}", &tessera::testkit::unique_user("f")[2..12]);
    let (_, mut record) = sample_record(Some(&user));
    record.data.clear();
    record.data.insert("counter".into(), 1.into());
    store.create(&record).await.unwrap();
    let keys = [
        ("session", store.session_key(&record.hash)),
        ("handle index", store.handle_key(&record.handle)),
        ("user index", store.user_key(&user)),
    ];
    let mut total = 0;
    for (what, key) in &keys {
        let bytes: i64 = client
            .custom(
                fred::cmd!("MEMORY"),
                vec![
                    "USAGE".to_owned(),
                    key.clone(),
                    "SAMPLES".into(),
                    "0".into(),
                ],
            )
            .await
            .unwrap();
        eprintln!("footprint: {what} {key}: {bytes} B");
        assert!(bytes > 0, "{what} key exists");
        total += bytes;
    }
    eprintln!("footprint: total {total} B");
    store
        .delete_by_user(&user, None, tessera::Revocation::Admin)
        .await
        .unwrap();
    assert!(
        total <= BUDGET,
        "a session costs {total} B, over {BUDGET} B"
    );
}
