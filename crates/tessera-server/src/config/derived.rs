//! Values derived from the settings: the session policy, the touch step
//! in force, the database URL and the paths a setting leaves to a default.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::Config;
use super::values::MetricsToken;

/// The touch step when the idle timeout is long enough for it (see
/// [`Config::effective_touch_step`]).
const DEFAULT_TOUCH_STEP: Duration = Duration::from_secs(60);

impl Config {
    /// The session policy these settings describe.
    pub fn policy(&self) -> tessera::SessionPolicy {
        let policy = tessera::SessionPolicy::default()
            .with_idle_timeout(self.idle_timeout)
            .with_absolute_timeout(self.absolute_timeout)
            .with_touch_step(self.effective_touch_step())
            .with_max_sessions_per_user(self.max_sessions_per_user)
            .with_session_limit_action(self.session_limit_action)
            .with_refresh_grace(self.refresh_grace)
            .with_max_data_bytes(Some(self.max_session_data));
        match self.remember() {
            Some((idle, absolute)) => policy.with_remember(idle, absolute),
            None => policy,
        }
    }

    /// The remember class's idle and absolute timeouts, when both are set
    /// (the class is offered only then).
    pub fn remember(&self) -> Option<(Duration, Duration)> {
        self.remember_idle_timeout
            .zip(self.remember_absolute_timeout)
    }

    /// The touch step in force: `touch_step` when set, else derived from
    /// the idle timeout as `min(60s, idle_timeout / 10)`, so that a short
    /// idle timeout given alone never clashes with a default meant for the
    /// default idle timeout. A tenth of the idle timeout is the most a
    /// session may end early for want of a write (see the `policy` module of
    /// the core).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tessera_server::config::Config;
    /// let mut config = Config::default(); // idle 30 min
    /// assert_eq!(config.effective_touch_step(), Duration::from_secs(60));
    /// config.idle_timeout = Duration::from_secs(25);
    /// assert_eq!(config.effective_touch_step(), Duration::from_millis(2500));
    /// config.touch_step = Some(Duration::from_secs(5));
    /// assert_eq!(config.effective_touch_step(), Duration::from_secs(5));
    /// ```
    pub fn effective_touch_step(&self) -> Duration {
        self.touch_step.unwrap_or_else(|| {
            // Every class's idle timeout bounds the derived step, so a short
            // remember idle timeout given alone is never refused either.
            let idle = match self.remember_idle_timeout {
                Some(remember) => self.idle_timeout.min(remember),
                None => self.idle_timeout,
            };
            DEFAULT_TOUCH_STEP.min(idle / 10)
        })
    }

    /// The server database's URL: `database` if set; else the store's own
    /// database when the store is SQL — the same SQLite file, or the same
    /// PostgreSQL or MySQL/MariaDB database, so that instances on several
    /// machines sharing a store also share users and API keys without
    /// further configuration — an in-memory database with the `memory://`
    /// store, and `sqlite://tessera.db` (a file on this machine) with Redis.
    ///
    /// ```
    /// use tessera_server::config::Config;
    /// let mut config = Config::default();
    /// config.store = "sqlite:///var/lib/tessera/all.db".into();
    /// assert_eq!(config.database_url(), "sqlite:///var/lib/tessera/all.db");
    /// config.store = "postgres://tessera@db/tessera".into();
    /// assert_eq!(config.database_url(), "postgres://tessera@db/tessera");
    /// config.store = "redis://127.0.0.1:6379".into();
    /// assert_eq!(config.database_url(), "sqlite://tessera.db");
    /// config.database = Some("mysql://tessera@db/users".into());
    /// assert_eq!(config.database_url(), "mysql://tessera@db/users");
    /// ```
    pub fn database_url(&self) -> String {
        let shared = ["sqlite:", "postgres:", "postgresql:", "mysql:", "mariadb:"];
        match &self.database {
            Some(url) => url.clone(),
            None if shared.iter().any(|s| self.store.starts_with(s)) => self.store.clone(),
            None if self.store == "memory://" => String::from("sqlite::memory:"),
            None => String::from("sqlite://tessera.db"),
        }
    }

    /// The signing-keys directory: `keys_dir` if set; else `tessera-keys`
    /// beside the SQLite database file (`./tessera-keys` for a relative,
    /// in-memory, PostgreSQL or MySQL database: instances on several
    /// machines must then set `keys_dir` to a shared directory).
    ///
    /// ```
    /// use std::path::PathBuf;
    /// use tessera_server::config::Config;
    /// let mut config = Config::default();
    /// assert_eq!(config.keys_path(), PathBuf::from("tessera-keys"));
    /// config.store = "sqlite:///var/lib/tessera/all.db".into();
    /// assert_eq!(config.keys_path(), PathBuf::from("/var/lib/tessera/tessera-keys"));
    /// config.keys_dir = Some("/etc/tessera/keys".into());
    /// assert_eq!(config.keys_path(), PathBuf::from("/etc/tessera/keys"));
    /// ```
    pub fn keys_path(&self) -> std::path::PathBuf {
        if let Some(dir) = &self.keys_dir {
            return std::path::PathBuf::from(dir);
        }
        let database = self.database_url();
        let file = database
            .strip_prefix("sqlite://")
            .or_else(|| database.strip_prefix("sqlite:"))
            .unwrap_or("");
        let file = file.split('?').next().unwrap_or("");
        let parent = if file.is_empty() || file.starts_with(':') {
            None
        } else {
            Path::new(file).parent()
        };
        match parent {
            Some(p) if !p.as_os_str().is_empty() => p.join("tessera-keys"),
            _ => std::path::PathBuf::from("tessera-keys"),
        }
    }

    /// Where the first-start demo password is written when standard output
    /// is not a terminal: `demo_password_file` when set, else
    /// `tessera-demo-password` beside the SQLite database file, else in the
    /// working directory.
    ///
    /// ```
    /// use std::path::PathBuf;
    /// use tessera_server::config::Config;
    /// let mut config = Config::default();
    /// assert_eq!(config.demo_password_path(), PathBuf::from("tessera-demo-password"));
    /// config.store = "sqlite:///var/lib/tessera/all.db".into();
    /// assert_eq!(config.demo_password_path(), PathBuf::from("/var/lib/tessera/tessera-demo-password"));
    /// ```
    pub fn demo_password_path(&self) -> std::path::PathBuf {
        if let Some(file) = self.demo_password_file.as_deref().filter(|f| !f.is_empty()) {
            return std::path::PathBuf::from(file);
        }
        let dir = crate::files::sqlite_file(&self.database_url())
            .and_then(|file| file.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        dir.join("tessera-demo-password")
    }

    /// The metrics token, unless unset or empty.
    pub fn metrics_token(&self) -> Option<&MetricsToken> {
        self.metrics_token.as_ref().filter(|t| !t.is_unset())
    }

    /// The URL to print for people to open.
    pub fn display_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => format!("http://{bound}/"),
        }
    }
}
