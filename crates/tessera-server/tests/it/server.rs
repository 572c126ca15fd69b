//! Starting the real `tessera` binary for the browser and hostile-HTTP
//! suites: a temporary SQLite file, a free port chosen by the kernel
//! (`127.0.0.1:0`, the bound address read from the start-up line), and a
//! session clock the test moves through `TESSERA_TEST_CLOCK_FILE` (read by
//! debug builds only).
//!
//! Shared by the `browser` and `hostile` modules, so not every helper is
//! used by both.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// The session cookie's name when the server runs with its secure defaults.
pub const SECURE_COOKIE: &str = "__Host-session";
/// The session cookie's name in plain-HTTP development mode.
pub const INSECURE_COOKIE: &str = "session";

/// The `metrics_token` of the test servers.
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789abcdef";

/// How the server is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The production defaults: `__Host-session`, `Secure`.
    Secure,
    /// `TESSERA_INSECURE_HTTP=true`: `session`, no `Secure`.
    InsecureHttp,
}

/// A running `tessera serve`, killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub demo_password: String,
    pub clock_ms: i64,
    stderr_path: PathBuf,
    pub mode: Mode,
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

fn write_atomic(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl Server {
    /// Starts `tessera serve` in `mode` with extra environment variables.
    pub fn start(mode: Mode, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Whole seconds: pages show deadlines in RFC 3339 seconds.
        let clock_ms = now_ms() / 1000 * 1000;
        write_atomic(&dir.path().join("clock"), &clock_ms.to_string());
        let store = format!("sqlite://{}", dir.path().join("tessera.db").display());
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--store", &store])
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
            .env("TESSERA_TEST_CLOCK_FILE", dir.path().join("clock"))
            .env("TESSERA_METRICS_TOKEN", METRICS_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
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
        // The demo lines come first; the listening line is printed last.
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) {
            // Standard output is a pipe: the password is in a 0600 file.
            if let Some(path) = line.strip_prefix("created user \"demo\"; password written to ") {
                let password = std::fs::read_to_string(path.trim()).unwrap();
                demo_password = Some(password.trim().to_owned());
            } else if let Some(u) = line.strip_prefix("tessera listening on ") {
                url = Some(u.trim().to_owned());
                break;
            }
        }
        let Some(url) = url else {
            let _ = child.kill();
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("tessera serve did not start; stderr:\n{log}");
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
            demo_password: demo_password.expect("first start prints the demo password"),
            clock_ms,
            stderr_path,
            mode,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// The same server under the host name `localhost` (another site than
    /// `127.0.0.1` for the browser).
    pub fn at_localhost(&self, path: &str) -> String {
        format!("http://localhost:{}{}", self.port, path)
    }

    pub fn cookie_name(&self) -> &'static str {
        match self.mode {
            Mode::Secure => SECURE_COOKIE,
            Mode::InsecureHttp => INSECURE_COOKIE,
        }
    }

    /// Moves the server's session clock forward.
    pub fn advance(&mut self, by: Duration) {
        self.clock_ms += i64::try_from(by.as_millis()).unwrap();
        write_atomic(&self.dir.path().join("clock"), &self.clock_ms.to_string());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn store_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("tessera.db").display())
    }

    /// Runs a CLI command against this server's database; (ok, stdout,
    /// stderr).
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = Command::new(BIN)
            .args(args)
            .args(["--store", &self.store_url()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
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

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One value of a Prometheus text exposition: the sample whose name and
/// labels start with `prefix` (e.g. `tessera_store_latency_seconds_count{op="load"}`).
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            (key == prefix).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}
