//! The admin commands, run as separate processes against the same file.

use serde_json::json;

use crate::common::{BIN, Server, client, login, now_ms, run_cli, run_cli_with, status};

#[test]
fn help_texts_are_there() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "migrate", "sweep", "user", "sessions", "api-key"] {
        assert!(text.contains(cmd), "{cmd} missing from --help:\n{text}");
    }
    for sub in [
        &["user", "add", "--help"][..],
        &["sessions", "revoke", "--help"],
        &["serve", "--help"],
    ] {
        let out = std::process::Command::new(BIN).args(sub).output().unwrap();
        assert!(out.status.success());
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn bad_configuration_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["migrate"])
        .env("TESSERA_IDLE_TIMEOUT", "30")
        .env(
            "TESSERA_STORE",
            format!("sqlite://{}", dir.path().join("x.db").display()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid duration"));
}

#[test]
fn migrate_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("m.db").display());
    let (ok, out, err) = run_cli(&store, &["migrate"], None);
    assert!(ok, "{err}");
    // Every embedded migration on a fresh database (their number grows).
    assert!(
        !out.contains("(0 migration") && out.contains(" migration(s) applied now"),
        "{out}"
    );
    let (ok, out, _) = run_cli(&store, &["migrate"], None);
    assert!(ok);
    assert!(out.contains("0 migration"), "{out}");
}

#[tokio::test]
async fn user_commands_change_who_can_sign_in() {
    let server = Server::start(&[]);
    let (ok, _, err) = server.cli(
        &["user", "add", "zoe", "--password-stdin"],
        Some("zoe-password-1\n"),
    );
    assert!(ok, "{err}");
    let (ok, _, err) = server.cli(
        &["user", "add", "zoe", "--password-stdin"],
        Some("zoe-password-1\n"),
    );
    assert!(!ok && err.contains("exists"), "{err}");
    let (ok, _, _) = server.cli(&["user", "add", "yan", "--password-stdin"], Some("short\n"));
    assert!(!ok);

    let s = login(&server, "zoe", "zoe-password-1").await;
    let (ok, _, err) = server.cli(
        &["user", "passwd", "zoe", "--password-stdin"],
        Some("zoe-password-2\n"),
    );
    assert!(ok, "{err}");
    let attempt = |pw: &'static str| {
        client()
            .post(server.at("/login"))
            .json(&json!({"username": "zoe", "password": pw}))
            .send()
    };
    assert_eq!(attempt("zoe-password-1").await.unwrap().status(), 401);
    let _ = s;
    login(&server, "zoe", "zoe-password-2").await;

    let (ok, _, err) = server.cli(&["user", "disable", "zoe"], None);
    assert!(ok, "{err}");
    assert_eq!(attempt("zoe-password-2").await.unwrap().status(), 401);
    let (ok, out, _) = server.cli(&["user", "list"], None);
    assert!(
        ok && out.contains("zoe\tdisabled") && out.contains("demo\tactive"),
        "{out}"
    );
    let _ = status;
}

#[test]
fn api_key_is_printed_once_and_revocable() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("k.db").display());
    let (ok, out, _) = run_cli(&store, &["api-key", "create", "svc"], None);
    assert!(ok);
    assert!(out.trim().starts_with("tsk_"));
    let (ok, _, err) = run_cli(&store, &["api-key", "create", "svc"], None);
    assert!(!ok && err.contains("exists"), "{err}");
    let (ok, _, _) = run_cli(&store, &["api-key", "revoke", "svc"], None);
    assert!(ok);
    let (ok, _, _) = run_cli(&store, &["api-key", "revoke", "svc"], None);
    assert!(!ok);
}

/// An unreachable store (here a Redis nobody listens on) cannot stop an
/// API key's revocation: the key is deleted from the database, and the
/// operator is told that instances with the cache were not told.
#[test]
fn an_api_key_is_revoked_while_the_store_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("k.db").display());
    // A port nothing listens on: bind one, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = format!("redis://127.0.0.1:{port}");
    let env = [
        ("TESSERA_DATABASE", database.as_str()),
        ("TESSERA_STORE_TIMEOUT", "1s"),
    ];
    let (ok, out, err) = run_cli_with(&store, &["api-key", "create", "svc"], None, &env);
    assert!(ok && out.trim().starts_with("tsk_"), "{err}");
    let (ok, out, err) = run_cli_with(&store, &["api-key", "revoke", "svc"], None, &env);
    assert!(ok, "{err}");
    assert!(out.contains("revoked API key svc"), "{out}");
    assert!(err.contains("could not be told"), "{err}");
    // Gone from the database: a second revocation finds nothing.
    let (ok, _, err) = run_cli_with(&store, &["api-key", "revoke", "svc"], None, &env);
    assert!(!ok && err.contains("no API key named"), "{err}");
}

#[tokio::test]
async fn sessions_commands_see_and_revoke_the_servers_sessions() {
    let server = Server::start(&[]);
    let a = crate::common::demo_login(&server).await;
    let b = crate::common::demo_login(&server).await;

    let (ok, out, err) = server.cli(&["sessions", "list", "--user", "demo", "--json"], None);
    assert!(ok, "{err}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().any(|s| s["handle"] == a.handle.as_str()));
    assert!(!out.contains(&a.token), "tokens are never listed");

    let (ok, _, err) = server.cli(&["sessions", "revoke", "--handle", &a.handle], None);
    assert!(ok, "{err}");
    assert_eq!(status(&server, &a.token).await.0, 401);
    assert_eq!(status(&server, &b.token).await.0, 200);

    let (ok, out, err) = server.cli(&["sessions", "revoke", "--user", "demo"], None);
    assert!(ok, "{err}");
    assert!(out.contains("revoked 1"), "{out}");
    assert_eq!(status(&server, &b.token).await.0, 401);

    let (ok, _, _) = server.cli(&["sessions", "revoke", "--handle", "not-a-handle"], None);
    assert!(!ok);
}

#[tokio::test]
async fn disable_and_passwd_revoke_existing_sessions() {
    let server = Server::start(&[]);
    let (ok, _, err) = server.cli(
        &["user", "add", "kim", "--password-stdin"],
        Some("kim-password-1\n"),
    );
    assert!(ok, "{err}");
    let s = login(&server, "kim", "kim-password-1").await;
    let (ok, _, err) = server.cli(
        &["user", "passwd", "kim", "--password-stdin"],
        Some("kim-password-2\n"),
    );
    assert!(ok, "{err}");
    assert_eq!(
        status(&server, &s.token).await.0,
        401,
        "passwd revokes sessions"
    );

    let s = login(&server, "kim", "kim-password-2").await;
    let (ok, _, err) = server.cli(&["user", "disable", "kim"], None);
    assert!(ok, "{err}");
    assert_eq!(
        status(&server, &s.token).await.0,
        401,
        "disable revokes sessions"
    );
}

#[tokio::test]
async fn sessions_survive_a_restart_and_sweep_runs() {
    let server = Server::start(&[]);
    let s = crate::common::demo_login(&server).await;
    let password = server.demo_password.clone().unwrap();
    let dir = server.stop();
    let store = format!("sqlite://{}", dir.path().join("tessera.db").display());
    let (ok, out, err) = run_cli(&store, &["sweep"], None);
    assert!(ok, "{err}");
    assert!(out.contains("purged 0"), "{out}");
    let again = Server::start_in(dir, &[]);
    assert_eq!(status(&again, &s.token).await.0, 200);
    login(&again, "demo", &password).await;
}

/// More expired sessions than one sweep batch (and than the 1,000 rows
/// the server once purged per interval).
const BACKLOG: usize = 1_500;
const _: () = assert!(BACKLOG > tessera_server::server::SWEEP_BATCH && BACKLOG > 1_000);

/// A SQLite store in a new directory holding one live session and
/// [`BACKLOG`] sessions that expired a year ago; returns the directory and
/// the store URL.
async fn sqlite_with_expired_backlog() -> (tempfile::TempDir, String) {
    use tessera::Store as _;
    use tessera::policy::SessionPolicy;
    use tessera::record::{ClientMeta, SessionRecord};
    use tessera::time::Timestamp;
    use tessera::token::SessionToken;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tessera.db").display());
    let store = tessera_sql::SqlStore::connect(&url).await.unwrap();
    let record_at = |at: Timestamp| {
        SessionRecord::new(
            SessionToken::generate().unwrap().hash(),
            Some("sam".into()),
            at,
            SessionPolicy::default().deadlines_at(at),
            ClientMeta::default(),
        )
        .unwrap()
    };
    // The live one first: a create purges a few records expired at its
    // own time, which must not take expired ones before the sweep does.
    store
        .create(&record_at(Timestamp::from_millis(now_ms())))
        .await
        .unwrap();
    let a_year_ago = Timestamp::from_millis(now_ms() - 365 * 24 * 3_600_000);
    for _ in 0..BACKLOG {
        store.create(&record_at(a_year_ago)).await.unwrap();
    }
    assert_eq!(
        session_rows(&url).await,
        i64::try_from(BACKLOG).unwrap() + 1
    );
    (dir, url)
}

async fn session_rows(url: &str) -> i64 {
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM tessera_sessions")
        .fetch_one(&pool)
        .await
        .unwrap()
}

/// The backlog is gone after the one sweep the server runs at start-up:
/// the paced sweeper works it off in batches within one sweep, and keeps
/// the live session.
#[tokio::test]
async fn the_sweep_at_start_up_purges_a_backlog_larger_than_one_batch() {
    let (dir, url) = sqlite_with_expired_backlog().await;
    // An hour between sweeps: only the one at start-up runs in this test.
    let _server = Server::start_in(dir, &[("TESSERA_SWEEP_INTERVAL", "1h")]);
    // Not a timing assertion: the deadline only ends a test whose sweep
    // stopped short (one batch, the old behaviour, leaves 500 rows forever).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut left = session_rows(&url).await;
    while left > 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        left = session_rows(&url).await;
    }
    assert_eq!(left, 1, "every expired session purged, the live one kept");
}

/// `tessera sweep` purges the whole backlog in paced batches and reports
/// the count; the live session stays.
#[tokio::test]
async fn tessera_sweep_purges_a_backlog_larger_than_one_batch() {
    let (_dir, url) = sqlite_with_expired_backlog().await;
    let (ok, out, err) = run_cli(&url, &["sweep"], None);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("purged {BACKLOG} expired")), "{out}");
    assert_eq!(session_rows(&url).await, 1);
}

/// ASVS 5.0 V7.4.5: an administrator ends every session of every user at
/// once. Malformed requests are refused and change nothing; the real one
/// is audited and every session is refused on the next request.
#[tokio::test]
async fn sessions_revoke_everyone_ends_every_users_sessions() {
    let mut server = Server::start(&[]);
    let (ok, _, err) = server.cli(
        &["user", "add", "lee", "--password-stdin"],
        Some("lee-password-1\n"),
    );
    assert!(ok, "{err}");
    let demo_a = crate::common::demo_login(&server).await;
    let demo_b = crate::common::demo_login(&server).await;
    let lee = login(&server, "lee", "lee-password-1").await;
    let all = [&demo_a.token, &demo_b.token, &lee.token];

    for bad in [
        &["sessions", "revoke", "--everyone", "--user", "demo"][..],
        &["sessions", "revoke", "--everyone", "--handle", &lee.handle],
        &["sessions", "revoke", "--everyone=yes"],
    ] {
        let (ok, _, err) = server.cli(bad, None);
        assert!(!ok, "{bad:?} must be refused");
        assert!(err.contains("error"), "{err}");
    }
    for token in all {
        assert_eq!(
            status(&server, token).await.0,
            200,
            "refused input changed nothing"
        );
    }

    let (ok, out, err) = server.cli(&["sessions", "revoke", "--everyone"], None);
    assert!(ok, "{err}");
    // The global kill switch: one write whatever the store's size.
    assert!(
        out.contains("revoked every session created before"),
        "{out}"
    );
    let audit = err
        .lines()
        .find(|l| l.contains("kill switch: every session created before"))
        .unwrap_or_else(|| panic!("no audit event in {err}"));
    let event: serde_json::Value = serde_json::from_str(audit).unwrap();
    assert_eq!(event["fields"]["event"], "revoked", "{audit}");
    for token in all {
        let (code, body) = status(&server, token).await;
        assert_eq!(code, 401, "no session survives");
        assert_eq!(body["reason"], "revoked", "{body}");
    }
    // People sign in again as usual. (The server's test clock stands still
    // at its start while the CLI reads the real clock: move the server past
    // the switch's instant, as real time would.)
    server.advance(std::time::Duration::from_secs(300));
    let again = login(&server, "lee", "lee-password-1").await;
    assert_eq!(status(&server, &again.token).await.0, 200);
}
