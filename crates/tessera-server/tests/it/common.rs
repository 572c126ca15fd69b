//! The one harness of these tests: starting the real `tessera` binary
//! (a temporary SQLite file unless a test names another store, a free port
//! chosen by the kernel — `127.0.0.1:0`, the bound address read from the
//! start-up line — and a session clock the test moves through
//! `TESSERA_TEST_CLOCK_FILE`, read by debug builds only) and talking to it
//! over HTTP.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// The `metrics_token` every test server gets (override with
/// `("TESSERA_METRICS_TOKEN", "")` to start one without).
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789abcdef";

/// The key-encryption key every test server and CLI run gets, so that
/// signing keys kept in a shared store (PostgreSQL, MySQL, Redis) open on
/// every instance (override with `("TESSERA_KEY_ENCRYPTION_KEY", "")` to
/// start one without). Base64 of 32 bytes.
pub const TEST_KEK: &str = "dGVzc2VyYS10ZXN0LWtleS1lbmNyeXB0aW9uLWtleSE=";

/// The session cookie's name when the server runs with its secure defaults.
pub const SECURE_COOKIE: &str = "__Host-session";
/// The session cookie's name in plain-HTTP development mode.
pub const INSECURE_COOKIE: &str = "session";

/// How the server is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The production defaults: `__Host-session`, `Secure`, and a session
    /// clock started on a whole second (pages show deadlines in RFC 3339
    /// seconds). The browser and hostile-HTTP suites run this way.
    Secure,
    /// `TESSERA_INSECURE_HTTP=true`: `session`, no `Secure`.
    InsecureHttp,
}

/// A running `tessera serve`, killed on drop.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub demo_password: Option<String>,
    /// `http://ADDR/metrics` when started with `TESSERA_METRICS_LISTEN`.
    pub metrics_url: Option<String>,
    pub clock_ms: i64,
    pub stderr_path: PathBuf,
    pub mode: Mode,
}

/// The cache setting every test server gets, from `TESSERA_TEST_CACHE`.
pub fn test_cache() -> Option<String> {
    std::env::var("TESSERA_TEST_CACHE")
        .ok()
        .filter(|v| !v.is_empty())
}

pub fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

impl Server {
    pub fn store_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("tessera.db").display())
    }

    fn clock_path(dir: &Path) -> PathBuf {
        dir.join("clock")
    }

    /// Starts `tessera serve` in plain-HTTP mode with extra environment
    /// variables.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, env)
    }

    /// Starts `tessera serve` with its secure defaults ([`Mode::Secure`])
    /// and extra environment variables.
    pub fn start_secure(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("sqlite://{}", dir.path().join("tessera.db").display());
        Self::launch(dir, &store, Mode::Secure, env)
    }

    /// Starts on the database in an existing directory (kept by the caller
    /// when it is not this server's own).
    pub fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Self {
        let store = format!("sqlite://{}", dir.path().join("tessera.db").display());
        Self::start_on(dir, &store, env)
    }

    /// Starts on the session store `store` (the server database is set
    /// with `TESSERA_DATABASE` in `env`, or defaults).
    pub fn start_on(dir: tempfile::TempDir, store: &str, env: &[(&str, &str)]) -> Self {
        Self::launch(dir, store, Mode::InsecureHttp, env)
    }

    fn launch(dir: tempfile::TempDir, store: &str, mode: Mode, env: &[(&str, &str)]) -> Self {
        let clock_ms = match mode {
            // Whole seconds: pages show deadlines in RFC 3339 seconds.
            Mode::Secure => now_ms() / 1000 * 1000,
            Mode::InsecureHttp => now_ms(),
        };
        write_atomic(&Self::clock_path(dir.path()), &clock_ms.to_string());
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--store", store])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "TESSERA_INSECURE_HTTP",
                if mode == Mode::InsecureHttp {
                    "true"
                } else {
                    "false"
                },
            )
            .env("TESSERA_METRICS_TOKEN", METRICS_TOKEN)
            .env("TESSERA_KEY_ENCRYPTION_KEY", TEST_KEK)
            // Its own file: servers whose database is not a SQLite file
            // would otherwise share one in the working directory.
            .env(
                "TESSERA_DEMO_PASSWORD_FILE",
                dir.path().join("tessera-demo-password"),
            )
            .env("TESSERA_TEST_CLOCK_FILE", Self::clock_path(dir.path()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        // `TESSERA_TEST_CACHE=on cargo test …` runs every server on a store
        // with an invalidation channel (Redis, PostgreSQL) with the session
        // cache on (a test's own setting wins). Not SQLite or MySQL: there
        // the cache is a documented polling fallback, under which tests of
        // immediate refusal across processes do not hold by design.
        if let Some(cache) = test_cache()
            && (store.starts_with("redis") || store.starts_with("postgres"))
        {
            cmd.env("TESSERA_CACHE", cache);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut url = None;
        let mut demo_password = None;
        let mut metrics_url = None;
        // The demo lines (if any) come first; the listening line is last.
        // Standard output is a pipe, not a terminal: the demo password is
        // in a file.
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) {
            if let Some(path) = line.strip_prefix("created user \"demo\"; password written to ") {
                let password = std::fs::read_to_string(path.trim()).unwrap();
                demo_password = Some(password.trim().to_owned());
            } else if let Some(u) = line.strip_prefix("tessera metrics on ") {
                metrics_url = Some(u.trim().to_owned());
            } else if let Some(u) = line.strip_prefix("tessera listening on ") {
                url = Some(u.trim().to_owned());
                break;
            }
        }
        let Some(url) = url else {
            let _ = child.kill();
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("server did not start; stderr:\n{log}");
        };
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        Self {
            child,
            url,
            port,
            dir,
            demo_password,
            metrics_url,
            clock_ms,
            stderr_path,
            mode,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The demo user's password (the server printed where to read it).
    pub fn demo_password(&self) -> &str {
        self.demo_password
            .as_deref()
            .expect("first start prints the demo password")
    }

    /// The session cookie's name in this server's mode.
    pub fn cookie_name(&self) -> &'static str {
        match self.mode {
            Mode::Secure => SECURE_COOKIE,
            Mode::InsecureHttp => INSECURE_COOKIE,
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// Moves the server's session clock forward.
    pub fn advance(&mut self, by: Duration) {
        self.clock_ms += i64::try_from(by.as_millis()).unwrap();
        write_atomic(
            &Self::clock_path(self.dir.path()),
            &self.clock_ms.to_string(),
        );
    }

    /// Lets the server's session clock run with real time (for races
    /// whose order real time decides): the server reads a clock file that
    /// holds no number as the system clock.
    pub fn use_real_clock(&mut self) {
        write_atomic(&Self::clock_path(self.dir.path()), "real time");
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Runs a CLI command against this server's database.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        run_cli(&self.store_url(), args, stdin)
    }

    pub fn api_key(&self) -> String {
        let (ok, out, err) = self.cli(&["api-key", "create", "backend"], None);
        assert!(ok, "{err}");
        out.trim().to_owned()
    }

    /// Creates a user through `tessera user add NAME --password-stdin`.
    pub fn add_user(&self, name: &str, password: &str) {
        let (ok, out, err) = self.cli(&["user", "add", name, "--password-stdin"], Some(password));
        assert!(ok, "user add {name} failed: {out}{err}");
    }

    /// Resident set size of the server process in KiB (`VmRSS` of
    /// /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in /proc status:\n{status}"))
    }

    /// Open file descriptors of the server process (sockets included).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// Asks the server to shut down gracefully (SIGTERM).
    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// The exit status, once the process has ended.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Server {
    /// Stops the server and hands back its directory (database kept).
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run_cli(store: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    run_cli_with(store, args, stdin, &[])
}

/// [`run_cli`] with extra environment variables (the same settings as the
/// servers, e.g. a Redis key prefix).
pub fn run_cli_with(
    store: &str,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .args(["--store", store])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TESSERA_KEY_ENCRYPTION_KEY", TEST_KEK)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_atomic(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A client that follows no redirects and keeps no cookies: tests handle
/// cookies explicitly, so they can replay old ones.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the cookie `name` set by a response, if any (`Some("")`
/// when cleared).
pub fn set_cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(prefix.as_str()))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
}

/// The plain-HTTP session cookie set by a response, if any (`Some("")`
/// when cleared).
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    set_cookie_value(headers, INSECURE_COOKIE)
}

pub fn cookie_header(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("session={token}")).unwrap()
}

/// A signed-in browser-like session (JSON sign-in).
pub struct Login {
    pub token: String,
    pub csrf: String,
    pub handle: String,
    pub body: Value,
}

/// `POST /login` with a JSON body: the response, whatever it is.
pub async fn try_login(server: &Server, user: &str, password: &str) -> reqwest::Response {
    client()
        .post(server.at("/login"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

pub async fn login(server: &Server, user: &str, password: &str) -> Login {
    let res = try_login(server, user, password).await;
    assert_eq!(res.status(), 200, "login failed");
    let token = session_cookie(res.headers()).expect("login sets a cookie");
    let body: Value = res.json().await.unwrap();
    Login {
        token,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        handle: body["handle"].as_str().unwrap().to_owned(),
        body,
    }
}

pub async fn demo_login(server: &Server) -> Login {
    login(server, "demo", server.demo_password.as_deref().unwrap()).await
}

/// GET /session with a cookie; returns (status, body).
pub async fn status(server: &Server, token: &str) -> (u16, Value) {
    let res = client()
        .get(server.at("/session"))
        .header("cookie", cookie_header(token))
        .send()
        .await
        .unwrap();
    let code = res.status().as_u16();
    (code, res.json().await.unwrap())
}

/// GET `path` with no credentials (`/metrics`: with the test servers'
/// metrics token).
pub async fn get(server: &Server, path: &str) -> reqwest::Response {
    let mut request = client().get(server.at(path));
    if path.starts_with("/metrics") {
        request = request.bearer_auth(METRICS_TOKEN);
    }
    request.send().await.unwrap()
}

/// GET `path` and the body as text (pages, `/metrics`).
pub async fn get_text(server: &Server, path: &str) -> String {
    get(server, path).await.text().await.unwrap()
}

/// GET `path` and the body as JSON (`/openapi.json`).
pub async fn get_json(server: &Server, path: &str) -> Value {
    get(server, path).await.json().await.unwrap()
}

/// `POST /v1/sessions` for `user` with API key `key`: the response body.
pub async fn create_session(server: &Server, key: &str, user: &str) -> Value {
    client()
        .post(server.at("/v1/sessions"))
        .bearer_auth(key)
        .json(&serde_json::json!({"user_id": user}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `DELETE /v1/sessions/{handle}` with API key `key`.
pub async fn delete_session(server: &Server, key: &str, handle: &str) -> reqwest::Response {
    client()
        .delete(server.at(&format!("/v1/sessions/{handle}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// `GET /v1/users/{user}/sessions` with API key `key`: the user's live
/// sessions.
pub async fn list_sessions(server: &Server, key: &str, user: &str) -> Vec<Value> {
    let res = client()
        .get(server.at(&format!("/v1/users/{user}/sessions")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Vec<Value>>().await.unwrap()
}

/// The value of the Prometheus sample `name` (with its labels, as
/// rendered: `tessera_dbsc_events_total{event="registered"}`) on the
/// server's `/metrics`; 0 when absent.
pub async fn metric(server: &Server, name: &str) -> f64 {
    let text = get_text(server, "/metrics").await;
    text.lines()
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0.0)
}
