//! Many `tessera serve` processes on one store: a session
//! created through instance A is valid through B; revoked through B, it is
//! refused through A on the very next request. Users and API keys are
//! shared too: on PostgreSQL and MySQL/MariaDB they live in the store's own
//! database by default (instances on different machines need nothing
//! else); with Redis, in one SQLite file named by the `database` setting.
//!
//! Needs `TESSERA_TEST_POSTGRES_URL`, `TESSERA_TEST_MYSQL_URL`,
//! `TESSERA_TEST_REDIS_URL` and `TESSERA_TEST_REDIS_CLUSTER_URL` (set by
//! `scripts/test.sh`); fails, naming the variable, without them.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backends::{MyDatabase, PgDatabase, required_env, unique};
use crate::common::{
    Server, client, cookie_header, create_session, login, run_cli, run_cli_with, session_cookie,
    try_login,
};

/// The status `check` answers once it is `want`: at once without the
/// session cache; with it, once the other instance's invalidation has
/// arrived (polled for a few seconds, far below the 30 s
/// `cache_max_staleness` the cached runs use, so only the invalidation can
/// make it so).
async fn settled<F, Fut>(cached: bool, want: u16, mut check: F) -> u16
where
    F: FnMut() -> Fut,
    Fut: Future<Output = u16>,
{
    let deadline = Instant::now() + Duration::from_secs(if cached { 10 } else { 0 });
    loop {
        let got = check().await;
        if got == want || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two instances on `store`, sharing users and keys — in `database` when
/// given, else in the store's own database (the default for SQL stores) —
/// exercised back and forth.
async fn two_instances_share_sessions(
    store: &str,
    database: Option<&str>,
    extra_env: &[(&str, &str)],
) {
    let mut env = Vec::new();
    if let Some(database) = database {
        env.push(("TESSERA_DATABASE", database));
    }
    env.extend_from_slice(extra_env);
    let cached = extra_env
        .iter()
        .any(|(k, v)| *k == "TESSERA_CACHE" && *v == "on")
        || crate::common::test_cache().as_deref() == Some("on");
    // The CLI, like an operator on a third machine, reaches the same users
    // and keys with the same settings.
    let mut cli_db = Vec::new();
    if let Some(database) = database {
        cli_db.extend(["--database", database]);
    }
    let cli = |args: &[&str], stdin: Option<&str>| {
        let mut all = args.to_vec();
        all.extend_from_slice(&cli_db);
        run_cli_with(store, &all, stdin, extra_env)
    };

    let a = Server::start_on(tempfile::tempdir().unwrap(), store, &env);
    let b = Server::start_on(tempfile::tempdir().unwrap(), store, &env);
    let password = a.demo_password.clone().expect("A creates the demo user");
    assert!(
        b.demo_password.is_none(),
        "B sees A's users: no second demo"
    );

    // Created through A, valid through B (same handle, same user).
    let s1 = login(&a, "demo", &password).await;
    let s2 = login(&a, "demo", &password).await;
    let (code, body) = crate::common::status(&b, &s1.token).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["handle"], s1.handle.as_str());
    assert_eq!(body["user"], "demo");
    let forward = |server: &Server, token: &str| {
        client()
            .get(server.at("/v1/auth/verify"))
            .header("cookie", cookie_header(token))
            .send()
    };
    let res = forward(&b, &s2.token).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tessera-session"], s2.handle.as_str());

    // The CSRF token issued by A is accepted by B (it is bound to the
    // stored session, not to the instance). Revoke s2 through B…
    let res = client()
        .delete(b.at(&format!("/sessions/{}", s2.handle)))
        .header("cookie", cookie_header(&s1.token))
        .header("x-csrf-token", &s1.csrf)
        // Revoking needs the password again (ASVS 5.0 V7.5.2).
        .json(&json!({"password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    // …and A refuses it on the very next request, in every way.
    let code = settled(cached, 401, || async {
        crate::common::status(&a, &s2.token).await.0
    })
    .await;
    assert_eq!(code, 401);
    assert_eq!(forward(&a, &s2.token).await.unwrap().status(), 401);

    // The same through the /v1 API: a key made on the shared database works
    // on both; a session created through B and deleted through B's API is
    // dead on A at once.
    let (ok, key, err) = cli(&["api-key", "create", "backend"], None);
    assert!(ok, "{err}");
    let key = key.trim().to_owned();
    let created: Value = create_session(&b, &key, "erin").await;
    let token = created["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {created}"))
        .to_owned();
    let verify = |server: &Server| {
        client()
            .post(server.at("/v1/sessions/verify"))
            .bearer_auth(&key)
            .json(&json!({"token": token}))
            .send()
    };
    assert_eq!(verify(&a).await.unwrap().status(), 200);
    let res = client()
        .delete(b.at(&format!(
            "/v1/sessions/{}",
            created["handle"].as_str().unwrap()
        )))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let code = settled(cached, 401, || async {
        verify(&a).await.unwrap().status().as_u16()
    })
    .await;
    assert_eq!(code, 401);

    // Sign-out through B: A refuses the cookie; s1 rotated through A by a
    // re-login is dead on B.
    let res = client()
        .post(b.at("/logout"))
        .header("cookie", cookie_header(&s1.token))
        .header("accept", "application/json")
        .header("x-csrf-token", &s1.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let code = settled(cached, 401, || async {
        crate::common::status(&a, &s1.token).await.0
    })
    .await;
    assert_eq!(code, 401);
    let s3 = login(&b, "demo", &password).await;
    let res = client()
        .post(a.at("/login"))
        .header("cookie", cookie_header(&s3.token))
        .header("x-csrf-token", &s3.csrf)
        .json(&json!({"username": "demo", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let s4 = session_cookie(res.headers()).unwrap();
    let code = settled(cached, 401, || async {
        crate::common::status(&b, &s3.token).await.0
    })
    .await;
    assert_eq!(code, 401);
    assert_eq!(crate::common::status(&b, &s4).await.0, 200);

    // A user created once (through the shared database) signs in through
    // either instance; disabled once, refused by both.
    let (ok, _, err) = cli(
        &["user", "add", "fay", "--password-stdin"],
        Some("fay-password-1\n"),
    );
    assert!(ok, "{err}");
    // The database refuses a second "fay" and a second key named "backend"
    // (a unique violation on every backend), changing nothing.
    let (ok, _, err) = cli(
        &["user", "add", "fay", "--password-stdin"],
        Some("fay-password-2\n"),
    );
    assert!(!ok && err.contains("exists"), "{err}");
    let (ok, _, err) = cli(&["api-key", "create", "backend"], None);
    assert!(!ok && err.contains("exists"), "{err}");
    let res = client()
        .post(a.at("/v1/sessions"))
        .bearer_auth(&key)
        .json(&json!({"user_id": "gus"}))
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_success(),
        "the first key still works: {}",
        res.status()
    );
    let on_a = login(&a, "fay", "fay-password-1").await;
    let on_b = login(&b, "fay", "fay-password-1").await;
    assert_eq!(crate::common::status(&b, &on_a.token).await.0, 200);
    // Names are exact on every backend (MySQL compares case-insensitively
    // unless told otherwise): another spelling is an unknown user.
    let res = try_login(&b, "FAY", "fay-password-1").await;
    assert_eq!(res.status(), 401, "user names are case-sensitive");
    let (ok, _, err) = cli(&["user", "disable", "fay"], None);
    assert!(ok, "{err}");
    for server in [&a, &b] {
        let res = try_login(server, "fay", "fay-password-1").await;
        assert_eq!(res.status(), 401, "a disabled user is refused everywhere");
    }
    let code = settled(cached, 401, || async {
        crate::common::status(&a, &on_b.token).await.0
    })
    .await;
    assert_eq!(code, 401);
    // The key revoked once is refused by both. With the cache, both
    // instances remember it (it was just used on each); only the CLI's
    // message makes them forget it within the polling window, far below
    // the 30 s bound of the cached runs.
    let use_key = |server: &Server| {
        client()
            .post(server.at("/v1/sessions"))
            .bearer_auth(&key)
            .json(&json!({"user_id": "gus"}))
            .send()
    };
    for server in [&a, &b] {
        let res = use_key(server).await.unwrap();
        assert!(res.status().is_success(), "{}", res.status());
    }
    let (ok, _, err) = cli(&["api-key", "revoke", "backend"], None);
    assert!(ok, "{err}");
    for server in [&a, &b] {
        let code = settled(cached, 401, || async {
            use_key(server).await.unwrap().status().as_u16()
        })
        .await;
        assert_eq!(code, 401, "a revoked key is refused everywhere");
    }
}

#[tokio::test]
async fn two_instances_on_one_postgresql() {
    let db = PgDatabase::create();
    two_instances_share_sessions(&db.url, None, &[]).await;
}

#[tokio::test]
async fn two_instances_on_one_mysql() {
    let db = MyDatabase::create();
    two_instances_share_sessions(&db.url, None, &[]).await;
}

#[tokio::test]
async fn two_instances_on_one_redis() {
    let url = required_env("TESSERA_TEST_REDIS_URL");
    // A prefix of its own: the Redis is shared with other suites.
    let prefix = format!("{}:", unique("tessera-it"));
    let shared = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", shared.path().join("users.db").display());
    two_instances_share_sessions(
        &url,
        Some(&database),
        &[
            ("TESSERA_STORE_KEY_PREFIX", &prefix),
            ("TESSERA_ABSOLUTE_TIMEOUT", "30m"),
        ],
    )
    .await;
}

#[tokio::test]
async fn two_instances_on_one_redis_cluster() {
    let url = required_env("TESSERA_TEST_REDIS_CLUSTER_URL");
    let prefix = format!("{}:", unique("tessera-it"));
    let shared = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", shared.path().join("users.db").display());
    two_instances_share_sessions(
        &url,
        Some(&database),
        &[
            ("TESSERA_STORE_KEY_PREFIX", &prefix),
            ("TESSERA_ABSOLUTE_TIMEOUT", "30m"),
        ],
    )
    .await;
}

/// The settings of the runs with the session cache on: a long staleness
/// bound, so that only invalidations make the other instance refuse in
/// time.
const CACHE_ON: [(&str, &str); 2] = [
    ("TESSERA_CACHE", "on"),
    ("TESSERA_CACHE_MAX_STALENESS", "30s"),
];

#[tokio::test]
async fn two_instances_on_one_postgresql_with_the_cache() {
    let db = PgDatabase::create();
    two_instances_share_sessions(&db.url, None, &CACHE_ON).await;
}

/// MySQL has no channel: the polling fallback, so the other instance
/// refuses once the cached copy is `cache_max_staleness` (here 1 s) old,
/// within the 10 s `settled` polls for.
#[tokio::test]
async fn two_instances_on_one_mysql_with_the_cache() {
    let db = MyDatabase::create();
    two_instances_share_sessions(
        &db.url,
        None,
        &[
            ("TESSERA_CACHE", "on"),
            ("TESSERA_CACHE_MAX_STALENESS", "1s"),
        ],
    )
    .await;
}

#[tokio::test]
async fn two_instances_on_one_redis_with_the_cache() {
    let url = required_env("TESSERA_TEST_REDIS_URL");
    let prefix = format!("{}:", unique("tessera-it"));
    let shared = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", shared.path().join("users.db").display());
    let mut env = vec![
        ("TESSERA_STORE_KEY_PREFIX", prefix.as_str()),
        ("TESSERA_ABSOLUTE_TIMEOUT", "30m"),
    ];
    env.extend_from_slice(&CACHE_ON);
    two_instances_share_sessions(&url, Some(&database), &env).await;
}

#[tokio::test]
async fn two_instances_on_one_redis_cluster_with_the_cache() {
    let url = required_env("TESSERA_TEST_REDIS_CLUSTER_URL");
    let prefix = format!("{}:", unique("tessera-it"));
    let shared = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", shared.path().join("users.db").display());
    let mut env = vec![
        ("TESSERA_STORE_KEY_PREFIX", prefix.as_str()),
        ("TESSERA_ABSOLUTE_TIMEOUT", "30m"),
    ];
    env.extend_from_slice(&CACHE_ON);
    two_instances_share_sessions(&url, Some(&database), &env).await;
}

#[test]
fn migrate_prepares_a_postgresql_store_and_unknown_urls_are_refused() {
    let db = PgDatabase::create();
    let users = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", users.path().join("u.db").display());
    let (ok, out, err) = run_cli(&db.url, &["migrate", "--database", &database], None);
    assert!(ok, "{err}");
    assert!(out.contains("session store is up to date"), "{out}");
    let table = std::process::Command::new("psql")
        .arg(&db.url)
        .args([
            "-tA",
            "-c",
            "SELECT to_regclass('tessera_sessions') IS NOT NULL",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&table.stdout).trim(), "t");
    assert!(users.path().join("u.db").exists(), "users database created");

    let (ok, _, err) = run_cli("mongodb://app:hunter2@h/x", &["migrate"], None);
    assert!(!ok);
    assert!(err.contains("unsupported store URL"), "{err}");
    assert!(!err.contains("hunter2"), "password redacted: {err}");
}

/// Instances starting together on a fresh database: every one migrates
/// the users/keys tables at the same moment, and the database-wide
/// migration lock lets exactly one apply each migration while the others
/// wait and find nothing to do.
fn concurrent_migrations_apply_once(store: &str) {
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let store = store.to_owned();
            std::thread::spawn(move || run_cli(&store, &["migrate"], None))
        })
        .collect();
    let mut applied_now = 0;
    for run in runs {
        let (ok, out, err) = run.join().unwrap();
        assert!(ok, "a concurrent migrate failed: {err}");
        // "database is up to date (N migration(s) applied now)": every
        // migration by one run, none by the others.
        let n: usize = out
            .split_once("up to date (")
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {out:?}"));
        if n > 0 {
            applied_now += 1;
        }
    }
    assert_eq!(
        applied_now, 1,
        "exactly one instance applies the migrations"
    );
}

#[test]
fn concurrent_migrations_on_postgresql_apply_once() {
    let db = PgDatabase::create();
    concurrent_migrations_apply_once(&db.url);
}

#[test]
fn concurrent_migrations_on_mysql_apply_once() {
    let db = MyDatabase::create();
    concurrent_migrations_apply_once(&db.url);
}
