//! The session cache across `tessera serve` processes: with
//! `cache = "on"` in two instances on one store, a session loaded through
//! B is served from B's memory, and a revocation through A is refused by
//! B once A's invalidation arrives.
//!
//! These tests assert correctness, never timing. The instances run with a
//! long `cache_max_staleness` (30 s) and B is polled for a few seconds at
//! most: B can only refuse in that time because it heard the
//! invalidation, so every test here fails if invalidation is removed
//! (nothing else would evict B's copy before 30 s). B's cache-hit counter
//! is read before each revocation to prove the copy was there.
//!
//! Needs `TESSERA_TEST_POSTGRES_URL` and `TESSERA_TEST_REDIS_URL` (set by
//! `scripts/test.sh`); fails, naming the variable, without them.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backends::{PgDatabase, required_env, unique};
use crate::common::{Server, client, create_session, get_text, metric, run_cli_with};

/// Far longer than any poll below: a refusal seen within [`POLL`] was
/// caused by an invalidation, not by the entry growing too old.
const LONG_STALENESS: &str = "30s";
/// How long B is polled for a refusal (well under [`LONG_STALENESS`]).
const POLL: Duration = Duration::from_secs(10);

/// Two cached instances on one store, and an API key valid on both.
struct Pair {
    a: Server,
    b: Server,
    key: String,
    /// The store URL and the settings the instances share (without the
    /// cache ones), for the CLI.
    store: String,
    shared_env: Vec<(String, String)>,
    /// Users and keys (Redis only: a shared SQLite file).
    _shared: tempfile::TempDir,
}

/// Starts A and B on `store` with the cache on and `env`.
fn start_pair(store: &str, extra_env: &[(&str, &str)]) -> Pair {
    let shared = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", shared.path().join("users.db").display());
    let mut shared_env: Vec<(&str, &str)> = extra_env.to_vec();
    if !store.starts_with("postgres") {
        // Redis keeps no users: every instance and the CLI share a file.
        shared_env.push(("TESSERA_DATABASE", &database));
    }
    let mut env = vec![
        ("TESSERA_CACHE", "on"),
        ("TESSERA_CACHE_MAX_STALENESS", LONG_STALENESS),
    ];
    env.extend_from_slice(&shared_env);
    let a = Server::start_on(tempfile::tempdir().unwrap(), store, &env);
    let b = Server::start_on(tempfile::tempdir().unwrap(), store, &env);
    let (ok, key, err) = run_cli_with(store, &["api-key", "create", "backend"], None, &env);
    assert!(ok, "{err}");
    Pair {
        a,
        b,
        key: key.trim().to_owned(),
        store: store.to_owned(),
        shared_env: shared_env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        _shared: shared,
    }
}

/// `POST /v1/sessions/verify` of `token` through `server`: the status.
async fn verify(server: &Server, key: &str, token: &str) -> u16 {
    client()
        .post(server.at("/v1/sessions/verify"))
        .bearer_auth(key)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Creates a session for `user` through A and loads it through B until B
/// serves it from its cache (its hit counter moves). Returns (token,
/// handle).
async fn cached_on_b(pair: &Pair, user: &str) -> (String, String) {
    let created: Value = create_session(&pair.a, &pair.key, user).await;
    let token = created["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {created}"))
        .to_owned();
    let handle = created["handle"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + POLL;
    loop {
        let hits = metric(&pair.b, "tessera_cache_hits_total").await;
        assert_eq!(verify(&pair.b, &pair.key, &token).await, 200);
        assert_eq!(verify(&pair.b, &pair.key, &token).await, 200);
        if metric(&pair.b, "tessera_cache_hits_total").await > hits {
            return (token, handle);
        }
        // Not yet served from memory: the subscription may not be
        // confirmed yet (the cache serves nothing until it is).
        assert!(
            Instant::now() < deadline,
            "B never served the session from its cache"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls B until it refuses `token`, for at most [`POLL`]: true if it did.
async fn refused_by_b(pair: &Pair, token: &str) -> bool {
    let deadline = Instant::now() + POLL;
    loop {
        match verify(&pair.b, &pair.key, token).await {
            401 => return true,
            200 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            200 => return false,
            other => panic!("unexpected status {other}"),
        }
    }
}

/// The three revocations of the `/v1` API, each through A, each refused by
/// B while B holds the session in its cache.
async fn revocations_through_a_are_refused_by_b(mut pair: Pair) {
    // One session.
    let (token, handle) = cached_on_b(&pair, "ada").await;
    let res = client()
        .delete(pair.a.at(&format!("/v1/sessions/{handle}")))
        .bearer_auth(&pair.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(
        refused_by_b(&pair, &token).await,
        "B served a session revoked through A from its cache"
    );

    // One session, revoked by the CLI (another process, its cache setting
    // left off): it publishes all the same.
    let (token, handle) = cached_on_b(&pair, "abe").await;
    let env: Vec<(&str, &str)> = pair
        .shared_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (ok, _, err) = run_cli_with(
        &pair.store,
        &["sessions", "revoke", "--handle", &handle],
        None,
        &env,
    );
    assert!(ok, "{err}");
    assert!(
        refused_by_b(&pair, &token).await,
        "B served a session revoked by the CLI from its cache"
    );

    // Every session of a user (the user's kill switch is set at A's "now",
    // which must be after the session's creation on the frozen test clock).
    let (token, _) = cached_on_b(&pair, "bob").await;
    let (other, _) = cached_on_b(&pair, "cyd").await;
    pair.a.advance(Duration::from_secs(1));
    let res = client()
        .delete(pair.a.at("/v1/users/bob/sessions"))
        .bearer_auth(&pair.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        refused_by_b(&pair, &token).await,
        "B served a session of a user revoked through A"
    );
    assert_eq!(
        verify(&pair.b, &pair.key, &other).await,
        200,
        "another user's session is untouched"
    );

    // Everyone.
    let (token, _) = cached_on_b(&pair, "dee").await;
    pair.a.advance(Duration::from_secs(1));
    let res = client()
        .delete(pair.a.at("/v1/sessions"))
        .bearer_auth(&pair.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(refused_by_b(&pair, &token).await);
    assert!(refused_by_b(&pair, &other).await);

    // B heard A: its counter of received invalidations moved.
    assert!(metric(&pair.b, "tessera_cache_invalidations_received_total").await >= 1.0);
    assert!(metric(&pair.a, "tessera_cache_invalidations_published_total").await >= 3.0);
    assert_eq!(
        metric(&pair.a, "tessera_cache_publish_failures_total").await,
        0.0
    );
}

fn redis_pair() -> Pair {
    let url = required_env("TESSERA_TEST_REDIS_URL");
    let prefix = format!("{}:", unique("tessera-cache"));
    start_pair(&url, &[("TESSERA_STORE_KEY_PREFIX", &prefix)])
}

#[tokio::test]
async fn cache_on_redis_b_refuses_what_a_revoked() {
    revocations_through_a_are_refused_by_b(redis_pair()).await;
}

/// With a channel, B answers the API key from memory once it is live, and
/// `/metrics` counts it.
#[tokio::test]
async fn cache_on_redis_answers_api_keys_from_memory_and_counts_it() {
    let pair = redis_pair();
    let (token, _) = cached_on_b(&pair, "kim").await;
    let hits = metric(&pair.b, "tessera_api_key_memory_hits_total").await;
    assert_eq!(verify(&pair.b, &pair.key, &token).await, 200);
    assert_eq!(verify(&pair.b, &pair.key, &token).await, 200);
    assert!(metric(&pair.b, "tessera_api_key_memory_hits_total").await >= hits + 1.0);
    assert!(metric(&pair.b, "tessera_api_key_memory_misses_total").await >= 1.0);
}

#[tokio::test]
async fn cache_on_redis_cluster_b_refuses_what_a_revoked() {
    let url = required_env("TESSERA_TEST_REDIS_CLUSTER_URL");
    let prefix = format!("{}:", unique("tessera-cache"));
    let pair = start_pair(&url, &[("TESSERA_STORE_KEY_PREFIX", &prefix)]);
    revocations_through_a_are_refused_by_b(pair).await;
}

#[tokio::test]
async fn cache_on_postgresql_b_refuses_what_a_revoked() {
    let db = PgDatabase::create();
    revocations_through_a_are_refused_by_b(start_pair(&db.url, &[])).await;
}

/// B's subscription is killed from the server side (`kill`), then a
/// session B holds is revoked through A at once, possibly while B is not
/// subscribed: B refuses it anyway (it bypassed and flushed its cache when
/// the subscription dropped, and again when it came back), well within
/// `cache_max_staleness`; and once back, B caches and hears again.
async fn a_killed_subscription_does_not_keep_a_revoked_session(pair: Pair, kill: impl Fn()) {
    let (token, handle) = cached_on_b(&pair, "eve").await;
    let flushes = metric(&pair.b, "tessera_cache_flushes_total").await;
    kill();
    let res = client()
        .delete(pair.a.at(&format!("/v1/sessions/{handle}")))
        .bearer_auth(&pair.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(
        refused_by_b(&pair, &token).await,
        "B served a revoked session after losing its subscription"
    );
    // B noticed the loss: it flushed (on losing the channel and on
    // getting it back).
    let deadline = Instant::now() + POLL;
    while metric(&pair.b, "tessera_cache_flushes_total").await <= flushes {
        assert!(
            Instant::now() < deadline,
            "B never noticed the lost channel"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Subscribed again: B serves from memory and hears revocations.
    let (token, handle) = cached_on_b(&pair, "fox").await;
    let res = client()
        .delete(pair.a.at(&format!("/v1/sessions/{handle}")))
        .bearer_auth(&pair.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(refused_by_b(&pair, &token).await);
}

#[tokio::test]
async fn cache_on_redis_survives_a_killed_subscription() {
    let url = required_env("TESSERA_TEST_REDIS_URL");
    let pair = redis_pair();
    a_killed_subscription_does_not_keep_a_revoked_session(pair, || {
        // Every pub/sub connection of this Redis (other suites' included;
        // they reconnect the same way).
        let out = Command::new("redis-cli")
            .args(["-u", &url, "CLIENT", "KILL", "TYPE", "pubsub"])
            .output()
            .expect("redis-cli (Debian package redis-tools) must be installed");
        let killed: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert!(killed >= 1, "no subscription killed: {out:?}");
    })
    .await;
}

#[tokio::test]
async fn cache_on_postgresql_survives_a_killed_listener() {
    let db = PgDatabase::create();
    let url = db.url.clone();
    let pair = start_pair(&db.url, &[]);
    a_killed_subscription_does_not_keep_a_revoked_session(pair, || {
        // The LISTEN connections of this test's database (A's and B's).
        let out = Command::new("psql")
            .arg(&url)
            .args([
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND query ILIKE 'LISTEN%'",
            ])
            .output()
            .expect("psql (Debian package postgresql-client) must be installed");
        let killed: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert!(killed >= 1, "no listener killed: {out:?}");
    })
    .await;
}

/// SQLite has no channel: the polling fallback, announced at start-up.
/// A CLI revocation (another process) is refused once the cached copy is
/// `cache_max_staleness` old, at the latest; the cache's counters are on
/// `/metrics`.
#[tokio::test]
async fn cache_on_sqlite_polls_within_the_staleness_bound_and_is_metered() {
    let staleness = Duration::from_millis(500);
    let server = Server::start(&[
        ("TESSERA_CACHE", "on"),
        ("TESSERA_CACHE_MAX_STALENESS", "500ms"),
    ]);
    assert!(
        server.logs().contains("without an invalidation channel"),
        "start-up warning: {}",
        server.logs()
    );
    let key = server.api_key();
    let created = create_session(&server, &key, "gil").await;
    let token = created["token"].as_str().unwrap().to_owned();
    let handle = created["handle"].as_str().unwrap().to_owned();
    assert_eq!(verify(&server, &key, &token).await, 200);
    assert_eq!(verify(&server, &key, &token).await, 200);
    let text = get_text(&server, "/metrics").await;
    for name in [
        "tessera_cache_hits_total",
        "tessera_cache_misses_total",
        "tessera_cache_invalidations_received_total",
        "tessera_cache_flushes_total",
        "tessera_cache_invalidations_published_total",
        "tessera_cache_publish_failures_total",
        "tessera_cache_entries",
        "tessera_cache_bytes",
        "tessera_cache_live",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(metric(&server, "tessera_cache_hits_total").await >= 1.0);
    assert!(metric(&server, "tessera_cache_misses_total").await >= 1.0);
    assert_eq!(metric(&server, "tessera_cache_live").await, 1.0);
    // Without an invalidation channel no API key is answered from memory:
    // each of the calls above asked the database.
    assert!(text.contains("tessera_api_key_memory_entries"));
    assert_eq!(
        metric(&server, "tessera_api_key_memory_hits_total").await,
        0.0
    );
    assert!(metric(&server, "tessera_api_key_memory_misses_total").await >= 3.0);

    // Revoked by another process (the CLI, no channel): refused at the
    // latest once the cached copy is older than the bound.
    let (ok, _, err) = server.cli(&["sessions", "revoke", "--handle", &handle], None);
    assert!(ok, "{err}");
    let revoked_at = Instant::now();
    let mut refused = false;
    while !refused && revoked_at.elapsed() < staleness + POLL {
        refused = verify(&server, &key, &token).await == 401;
        if !refused {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(refused, "a revoked session outlived cache_max_staleness");
}

#[tokio::test]
async fn cache_metrics_are_absent_with_the_cache_off() {
    let server = Server::start(&[]);
    let text = get_text(&server, "/metrics").await;
    assert!(!text.contains("tessera_cache_"), "{text}");
    assert!(!text.contains("tessera_api_key_memory_"), "{text}");
    assert!(!server.logs().contains("session cache on"));
}
