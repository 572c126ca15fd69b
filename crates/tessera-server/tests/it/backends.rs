//! The throw-away PostgreSQL and Redis instances of `scripts/test.sh`
//! (`scripts/services.sh`), for the tests that need a shared store.

use std::process::Command;

use crate::common::now_ms;

/// The URL in `var`, or a failure naming it: these tests never skip.
pub fn required_env(var: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{var} is not set: run the tests through scripts/test.sh, or start the \
             throw-away services with `eval \"$(scripts/services.sh start)\"` \
             (and `scripts/services.sh stop` afterwards)"
        ),
    }
}

/// A name no other test run uses, nor another test of this run (tests
/// run in parallel and may ask within the same millisecond).
pub fn unique(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}_{}_{}_{n}", std::process::id(), now_ms())
}

/// A fresh PostgreSQL database on the server of `TESSERA_TEST_POSTGRES_URL`,
/// dropped (with its connections) when this value is dropped.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub fn create() -> Self {
        let admin_url = required_env("TESSERA_TEST_POSTGRES_URL");
        let name = unique("tessera_it");
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
        // Same server and credentials, other database.
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Self {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin_url)
            .args(["-q", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .status();
    }
}

pub fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .arg(url)
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql (Debian package postgresql-client) must be installed");
    assert!(
        out.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh MySQL/MariaDB database on the server of `TESSERA_TEST_MYSQL_URL`,
/// dropped when this value is dropped.
pub struct MyDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl MyDatabase {
    pub fn create() -> Self {
        let admin_url = required_env("TESSERA_TEST_MYSQL_URL");
        let name = unique("tessera_it");
        mariadb(&admin_url, &format!("CREATE DATABASE {name}"));
        let base = admin_url
            .split('?')
            .next()
            .unwrap()
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Self {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for MyDatabase {
    fn drop(&mut self) {
        let _ = mariadb_command(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {}", self.name),
        )
        .status();
    }
}

/// The `mariadb` client pointed at the server of a `mysql://user[:pw]@host:port/…` URL.
fn mariadb_command(url: &str, sql: &str) -> Command {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (auth, host) = rest.split_once('@').unwrap_or(("root", rest));
    let host = host.split('/').next().unwrap();
    let (host, port) = host.split_once(':').unwrap_or((host, "3306"));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let mut cmd = Command::new("mariadb");
    cmd.args(["--protocol=tcp", "-h", host, "-P", port, "-u", user]);
    if !password.is_empty() {
        cmd.env("MYSQL_PWD", password);
    }
    cmd.args(["-e", sql]);
    cmd
}

pub fn mariadb(url: &str, sql: &str) {
    let out = mariadb_command(url, sql)
        .output()
        .expect("the mariadb client (Debian package mariadb-client) must be installed");
    assert!(
        out.status.success(),
        "mariadb {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
