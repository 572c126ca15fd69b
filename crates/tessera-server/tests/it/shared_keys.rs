//! Signing keys kept in the shared store, over real HTTP: two `tessera
//! serve` instances on one PostgreSQL database, one MySQL/MariaDB database,
//! one Redis and one Redis Cluster (no shared disk: each has its own
//! directory) publish one JWKS, verify each other's access tokens, and
//! follow a `tessera keys rotate` run from a third process; the stored key
//! set holds no private key in clear; an instance without the
//! key-encryption key, or with another one, refuses to start.

use reqwest::StatusCode;
use serde_json::Value;

use crate::backends::{MyDatabase, PgDatabase, required_env, unique};
use crate::common::{Server, client, run_cli_with};
use crate::tokens::{issue, jwks, kid_of};

/// Where the two instances keep sessions, users and keys.
struct Shared {
    store: String,
    /// Settings both instances and the CLI get.
    env: Vec<(String, String)>,
    /// Reads the stored (sealed) key set as text.
    kind: Kind,
    /// Kept alive for the test's length (a scratch database, or the
    /// directory of the Redis instances' SQLite users database).
    _scratch: Box<dyn std::any::Any + Send>,
}

enum Kind {
    Sql,
    Redis { prefix: String },
}

impl Shared {
    fn postgres() -> Self {
        let db = PgDatabase::create();
        Self {
            store: db.url.clone(),
            env: Vec::new(),
            kind: Kind::Sql,
            _scratch: Box::new(db),
        }
    }

    fn mysql() -> Self {
        let db = MyDatabase::create();
        Self {
            store: db.url.clone(),
            env: Vec::new(),
            kind: Kind::Sql,
            _scratch: Box::new(db),
        }
    }

    /// Redis for sessions and keys; users and API keys in one SQLite file
    /// both instances open (they run on this machine), so that one API key
    /// works on both.
    fn redis(var: &str) -> Self {
        let prefix = format!("{}:", unique("tessera-keys"));
        let dir = tempfile::tempdir().unwrap();
        let database = format!("sqlite://{}", dir.path().join("users.db").display());
        Self {
            store: required_env(var),
            env: vec![
                ("TESSERA_STORE_KEY_PREFIX".into(), prefix.clone()),
                ("TESSERA_DATABASE".into(), database),
            ],
            kind: Kind::Redis { prefix },
            _scratch: Box::new(dir),
        }
    }

    fn env_with<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra);
        env
    }

    /// An instance in a directory of its own: nothing on disk is shared.
    fn start(&self) -> Server {
        Server::start_on(
            tempfile::tempdir().unwrap(),
            &self.store,
            &self.env_with(&[]),
        )
    }

    fn cli(&self, args: &[&str], extra: &[(&str, &str)]) -> (bool, String, String) {
        run_cli_with(&self.store, args, None, &self.env_with(extra))
    }

    /// The stored key set document, as anyone with read access to the
    /// store would see it.
    async fn stored(&self) -> String {
        match &self.kind {
            Kind::Redis { prefix } => {
                let store = tessera_redis::RedisStore::connect(
                    &self.store,
                    tessera_redis::RedisOptions::default().with_key_prefix(prefix.clone()),
                )
                .await
                .unwrap();
                store.document_get("signing-keys").await.unwrap().unwrap().1
            }
            Kind::Sql if self.store.starts_with("postgres") => {
                let pool = sqlx::PgPool::connect(&self.store).await.unwrap();
                sqlx::query_scalar("SELECT document FROM tessera_signing_keys")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
            Kind::Sql => {
                let pool = sqlx::MySqlPool::connect(&self.store).await.unwrap();
                sqlx::query_scalar("SELECT document FROM tessera_signing_keys")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        }
    }
}

fn kids(jwks: &Value) -> Vec<String> {
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

/// Forward auth with an access token: what a reverse proxy asks.
async fn forward(server: &Server, access: &str) -> StatusCode {
    client()
        .get(server.at("/v1/auth/verify"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
}

async fn two_instances_share_one_sealed_key_set(shared: Shared) {
    let a = shared.start();
    let b = shared.start();
    let (ok, out, err) = shared.cli(&["api-key", "create", "backend"], &[]);
    assert!(ok, "{err}");
    let key = out.trim().to_owned();

    // One key set: the same JWKS from both, a token of one verifies at
    // the other.
    let (_, jwks_a) = jwks(&a).await;
    let (_, jwks_b) = jwks(&b).await;
    assert_eq!(kids(&jwks_a).len(), 1, "{jwks_a}");
    assert_eq!(kids(&jwks_a), kids(&jwks_b));
    let from_a = issue(&a, &key, "alice").await;
    assert_eq!(forward(&b, &from_a.access).await, StatusCode::OK);
    let from_b = issue(&b, &key, "bob").await;
    assert_eq!(kid_of(&from_a.access), kid_of(&from_b.access));

    // The store holds the set sealed: key ids and dates, no private key.
    let stored = shared.stored().await;
    assert!(stored.contains(&kid_of(&from_a.access)), "{stored}");
    assert!(stored.contains("\"sealed\""), "{stored}");
    for clear in ["PRIVATE KEY", "BEGIN", "\"d\""] {
        assert!(!stored.contains(clear), "{clear} in {stored}");
    }

    // `tessera keys rotate` in a third process, on no shared disk.
    let (ok, out, err) = shared.cli(&["keys", "rotate"], &[]);
    assert!(ok, "{err}");
    let new_kid = out
        .split_whitespace()
        .nth(3)
        .expect("new signing key KID …")
        .to_owned();
    assert!(
        !out.contains("PRIVATE") && !err.contains("PRIVATE"),
        "{out}{err}"
    );

    // B verifies a token of the new key at once (the unknown kid makes it
    // look; its test clock stands still), both sign with it and publish
    // both keys, and the old key's tokens keep verifying.
    let after = issue(&a, &key, "alice").await;
    assert_eq!(kid_of(&after.access), new_kid, "{out}");
    assert_eq!(forward(&b, &after.access).await, StatusCode::OK);
    assert_eq!(kid_of(&issue(&b, &key, "bob").await.access), new_kid);
    for server in [&a, &b] {
        let (_, published) = jwks(server).await;
        assert_eq!(kids(&published).len(), 2, "{published}");
        assert!(kids(&published).contains(&new_kid));
        assert_eq!(forward(server, &from_a.access).await, StatusCode::OK);
    }
    let (ok, out, err) = shared.cli(&["keys", "list"], &[]);
    assert!(ok, "{err}");
    assert_eq!(out.matches("\tactive\t").count(), 1, "{out}");
    assert_eq!(out.matches("\tretired\t").count(), 1, "{out}");

    // A key encryption key other than the one the set was sealed with:
    // refused, naming neither key.
    let other = "b3RoZXIta2V5LWVuY3J5cHRpb24ta2V5LTMyLWJ5dGU=";
    let (ok, _, err) = shared.cli(&["keys", "list"], &[("TESSERA_KEY_ENCRYPTION_KEY", other)]);
    assert!(!ok);
    assert!(err.contains("sealed with key-encryption key"), "{err}");
    assert!(!err.contains(other), "{err}");
    let (ok, _, err) = shared.cli(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("TESSERA_KEY_ENCRYPTION_KEY", other)],
    );
    assert!(!ok);
    assert!(err.contains("sealed with key-encryption key"), "{err}");
    // None at all: refused rather than stored in clear.
    let (ok, _, err) = shared.cli(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("TESSERA_KEY_ENCRYPTION_KEY", "")],
    );
    assert!(!ok);
    assert!(err.contains("TESSERA_KEY_ENCRYPTION_KEY"), "{err}");
    // The failed attempts changed nothing.
    assert_eq!(kids(&jwks(&a).await.1).len(), 2);
    assert_eq!(forward(&b, &after.access).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_in_postgresql_are_shared_sealed_and_rotated_everywhere() {
    two_instances_share_one_sealed_key_set(Shared::postgres()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_in_mysql_are_shared_sealed_and_rotated_everywhere() {
    two_instances_share_one_sealed_key_set(Shared::mysql()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_in_redis_are_shared_sealed_and_rotated_everywhere() {
    two_instances_share_one_sealed_key_set(Shared::redis("TESSERA_TEST_REDIS_URL")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_in_redis_cluster_are_shared_sealed_and_rotated_everywhere() {
    two_instances_share_one_sealed_key_set(Shared::redis("TESSERA_TEST_REDIS_CLUSTER_URL")).await;
}

/// Many instances starting at once on an empty store create one key set,
/// not one each (the first write wins, the others read it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_agree_on_one_key() {
    let shared = Shared::postgres();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let (store, env) = (shared.store.clone(), shared.env.clone());
            std::thread::spawn(move || {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                Server::start_on(tempfile::tempdir().unwrap(), &store, &env)
            })
        })
        .collect();
    let servers: Vec<Server> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    let mut seen = Vec::new();
    for server in &servers {
        seen.push(kids(&jwks(server).await.1));
    }
    seen.dedup();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].len(), 1, "{seen:?}");
}
