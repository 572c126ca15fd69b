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

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), now_ms())
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
