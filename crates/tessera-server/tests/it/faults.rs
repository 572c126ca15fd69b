//! Store faults: the test starts its OWN store process,
//! points `tessera serve` at it, fires requests continuously, kills the
//! store while requests are in flight, and checks that
//!
//! - every answer is a 503 once the store is gone (never a 200 for a
//!   session that could not be checked, never a 401 or 500), with no panic
//!   and no request outliving a client-side bound;
//! - `/readyz` turns 503;
//! - after the store is restarted on the same port and data directory the
//!   service recovers by itself (polled, bounded), without restarting
//!   tessera, and the session created before the outage works again.
//!
//! Redis runs with `--appendonly yes --appendfsync always`, so the session
//! written before the kill survives it. PostgreSQL is stopped with
//! `pg_ctl stop -m immediate` (no shutdown checkpoint: a crash as far as
//! clients are concerned) and restarted on the same data directory.
//! MariaDB (`mariadb-install-db`, then `mariadbd` on a temporary data
//! directory, socket and free port) is killed with SIGKILL and restarted on
//! its data. The Redis Cluster is the test's own 3 masters: all of them are
//! killed at once (so every key of the session is gone, whatever its slot)
//! and restarted with their `nodes.conf` and append-only files.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Mutex;

use crate::common::{Server, cookie_header, demo_login};

/// `TESSERA_STORE_TIMEOUT` of the server under test.
const STORE_TIMEOUT: &str = "1s";
/// No request may take longer than this (the store timeout plus generous
/// slack for a loaded machine): a hung request fails the test.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long recovery may take after the store is back.
const RECOVERY_BOUND: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn bounded_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap()
}

/// Polls `check` every [`POLL`] until it holds, failing after `bound`.
async fn eventually<F, Fut>(what: &str, bound: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// One answer seen by the load generator.
#[derive(Debug)]
struct Seen {
    path: &'static str,
    /// The request was sent after the store was confirmed dead.
    after_kill: bool,
    outcome: Result<u16, String>,
}

/// Fires `/session`, `/v1/auth/verify` and a CSRF-protected keepalive
/// continuously until `stop`.
fn load(
    server: &Server,
    token: &str,
    csrf: &str,
    killed: &Arc<AtomicBool>,
    stop: &Arc<AtomicBool>,
    seen: &Arc<Mutex<Vec<Seen>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for path in ["/session", "/v1/auth/verify", "/session/keepalive"] {
        for _ in 0..2 {
            let url = server.at(path);
            let (token, csrf) = (token.to_owned(), csrf.to_owned());
            let (killed, stop, seen) = (killed.clone(), stop.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                let client = bounded_client();
                while !stop.load(Ordering::SeqCst) {
                    let after_kill = killed.load(Ordering::SeqCst);
                    let rb = if path == "/session/keepalive" {
                        client
                            .post(&url)
                            .header("x-csrf-token", &csrf)
                            .header("accept", "application/json")
                    } else {
                        client.get(&url)
                    };
                    let outcome = rb
                        .header("cookie", cookie_header(&token))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|e| format!("{e:?}"));
                    seen.lock().await.push(Seen {
                        path,
                        after_kill,
                        outcome,
                    });
                }
            }));
        }
    }
    tasks
}

/// The whole scenario, around a store that `kill` stops and `restart`
/// brings back on the same address and data.
async fn outage_and_recovery(
    store_url: &str,
    extra_env: &[(&str, &str)],
    kill: impl FnOnce(),
    restart: impl FnOnce(),
) {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("users.db").display());
    let mut env = vec![
        ("TESSERA_DATABASE", database.as_str()),
        ("TESSERA_STORE_TIMEOUT", STORE_TIMEOUT),
        ("TESSERA_STORE_CONNECT_TIMEOUT", STORE_TIMEOUT),
    ];
    env.extend_from_slice(extra_env);
    let mut server = Server::start_on(tempfile::tempdir().unwrap(), store_url, &env);
    let session = demo_login(&server).await;
    let client = bounded_client();
    let status = |token: String| {
        let c = client.clone();
        let url = server.at("/session");
        async move {
            c.get(url)
                .header("cookie", cookie_header(&token))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    assert_eq!(status(session.token.clone()).await.unwrap(), 200);

    let killed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tasks = load(
        &server,
        &session.token,
        &session.csrf,
        &killed,
        &stop,
        &seen,
    );

    // Let the load run against the healthy store first.
    eventually(
        "successful requests before the outage",
        RECOVERY_BOUND,
        || {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .await
                    .iter()
                    .filter(|s| s.outcome == Ok(200))
                    .count()
                    >= 10
            }
        },
    )
    .await;
    kill();
    killed.store(true, Ordering::SeqCst);
    // Keep firing until plenty of requests have met the dead store.
    eventually("requests during the outage", RECOVERY_BOUND, || {
        let seen = seen.clone();
        async move { seen.lock().await.iter().filter(|s| s.after_kill).count() >= 30 }
    })
    .await;

    let ready = |c: reqwest::Client, url: String| async move {
        c.get(url).send().await.map(|r| r.status().as_u16())
    };
    assert_eq!(
        ready(client.clone(), server.at("/readyz")).await.unwrap(),
        503,
        "/readyz while the store is down"
    );
    assert_eq!(
        status(session.token.clone()).await.unwrap(),
        503,
        "a session that cannot be checked is never 200 nor 401"
    );
    let res = client
        .post(server.at("/login"))
        .json(&json!({"username": "demo", "password": server.demo_password.clone().unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503, "no sign-in without the store");
    assert!(res.headers().get("set-cookie").is_none());

    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    {
        let seen = seen.lock().await;
        for s in seen.iter() {
            match &s.outcome {
                Ok(code) if s.after_kill => {
                    assert_eq!(*code, 503, "{} after the kill: {s:?}", s.path);
                }
                // In flight at the kill: answered either way, but nothing else.
                Ok(code) => assert!(*code == 200 || *code == 503, "{s:?}"),
                Err(e) => panic!("request failed or hung past {CLIENT_TIMEOUT:?}: {e} ({s:?})"),
            }
        }
        let after = seen.iter().filter(|s| s.after_kill).count();
        assert!(after >= 30, "{after} requests during the outage");
    }

    // Back on the same port and data: tessera recovers by itself.
    restart();
    eventually("/readyz after the store came back", RECOVERY_BOUND, || {
        let r = ready(client.clone(), server.at("/readyz"));
        async move { matches!(r.await, Ok(200)) }
    })
    .await;
    eventually("the old session after recovery", RECOVERY_BOUND, || {
        let s = status(session.token.clone());
        async move { matches!(s.await, Ok(200)) }
    })
    .await;
    let res = client
        .get(server.at("/v1/auth/verify"))
        .header("cookie", cookie_header(&session.token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tessera-session"], session.handle.as_str());
    // A new sign-in works as well.
    demo_login(&server).await;

    assert!(
        server.child.try_wait().unwrap().is_none(),
        "tessera kept running"
    );
    let logs = server.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    assert!(!logs.contains(&session.token), "no token in the log");
}

// --- Redis ----------------------------------------------------------------

fn start_redis(dir: &Path, port: u16) -> Child {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(dir.join("redis.log"))
                .unwrap(),
        ))
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (Debian package redis-server) must be installed");
    let deadline = Instant::now() + RECOVERY_BOUND;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(POLL);
    }
    child
}

#[tokio::test]
async fn redis_outage_is_503_and_recovers_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let redis = std::sync::Arc::new(std::sync::Mutex::new(start_redis(dir.path(), port)));
    let url = format!("redis://127.0.0.1:{port}");
    let (r1, r2) = (redis.clone(), redis.clone());
    let data = dir.path().to_owned();
    outage_and_recovery(
        &url,
        &[],
        move || {
            let mut child = r1.lock().unwrap();
            child.kill().unwrap(); // SIGKILL: no goodbye to clients
            child.wait().unwrap();
        },
        move || {
            *r2.lock().unwrap() = start_redis(&data, port);
        },
    )
    .await;
    let mut child = redis.lock().unwrap();
    let _ = child.kill();
    let _ = child.wait();
}

// --- PostgreSQL -----------------------------------------------------------

struct Postgres {
    bindir: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    port: u16,
}

fn pg_bindir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries (Debian package postgresql) must be installed")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .expect("no /usr/lib/postgresql/*/bin with initdb and pg_ctl: install the Debian package postgresql")
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root
/// (initdb refuses to run as root); fails the test if it fails.
fn pg_tool(pg: &Postgres, tool: &str, args: &[&str]) {
    let out = pg_command(pg, tool, args).output().unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pg_command(pg: &Postgres, tool: &str, args: &[&str]) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let program = pg.bindir.join(tool);
    let mut cmd = if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    cmd.args(args);
    cmd
}

impl Postgres {
    fn init(dir: &Path) -> Self {
        let pg = Self {
            bindir: pg_bindir(),
            data: dir.join("data"),
            socket_dir: dir.to_owned(),
            port: free_port(),
        };
        // The postgres user must reach the directory when we are root.
        let _ = Command::new("chmod").arg("0777").arg(dir).status();
        let data = pg.data.to_str().unwrap().to_owned();
        pg_tool(
            &pg,
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        pg
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.socket_dir.display()
        );
        let log = self.socket_dir.join("server.log");
        pg_tool(
            self,
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
        );
    }

    /// Immediate stop: every backend is killed without a checkpoint.
    fn kill(&self) {
        pg_tool(
            self,
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Best effort (it may be stopped already).
        let data = self.data.to_str().unwrap_or_default().to_owned();
        let _ = pg_command(self, "pg_ctl", &["-D", &data, "-m", "immediate", "stop"]).output();
    }
}

#[tokio::test]
async fn postgres_outage_is_503_and_recovers_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Arc::new(Postgres::init(dir.path()));
    pg.start();
    let (p1, p2) = (pg.clone(), pg.clone());
    outage_and_recovery(&pg.url(), &[], move || p1.kill(), move || p2.start()).await;
}

// --- MariaDB / MySQL ------------------------------------------------------

/// The test's own `mariadbd` on a temporary data directory, socket and free
/// port (as `scripts/services.sh` starts one), killed with SIGKILL and
/// restarted on the same data. InnoDB flushes its log at every commit (the
/// default), so the session written before the kill survives it.
struct MariaDb {
    dir: PathBuf,
    port: u16,
    user: String,
    child: std::sync::Mutex<Option<Child>>,
}

impl MariaDb {
    fn init(dir: &Path) -> Self {
        let user = Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap();
        let db = Self {
            dir: dir.to_owned(),
            port: free_port(),
            user,
            child: std::sync::Mutex::new(None),
        };
        let out = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", db.data().display()))
            .arg(format!("--user={}", db.user))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ])
            .output()
            .expect("mariadb-install-db (Debian package mariadb-server) must be installed");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        db
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    fn start(&self) {
        // --no-defaults: the machine's my.cnf (the shared server's socket
        // and data directory) must not leak in.
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.data().display()))
            .arg(format!("--user={}", self.user))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mysqld.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                self.dir.join("server.log").display()
            ))
            .args([
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--max-connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd (Debian package mariadb-server) must be installed");
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + RECOVERY_BOUND;
        loop {
            let ping = Command::new("mariadb-admin")
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket().display()))
                .args(["-uroot", "ping"])
                .output();
            if ping.is_ok_and(|o| o.status.success()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not start: {}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Password-less root over TCP and the `test` database (first start).
    fn setup(&self) {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args([
                "-uroot",
                "-e",
                "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
                 GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
                 CREATE DATABASE IF NOT EXISTS test;
                 FLUSH PRIVILEGES;",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mariadb setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILL: a crash as far as clients are concerned.
    fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/test", self.port)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.child.lock()
            && let Some(mut child) = guard.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn mariadb_outage_is_503_and_recovers_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(MariaDb::init(dir.path()));
    db.start();
    db.setup();
    let (d1, d2) = (db.clone(), db.clone());
    outage_and_recovery(&db.url(), &[], move || d1.kill(), move || d2.start()).await;
}

// --- Redis Cluster --------------------------------------------------------

/// The test's own 3-master Redis Cluster (no replicas), each node with its
/// own directory, `nodes.conf` and append-only file, so that killing every
/// master and restarting it with its `nodes.conf` brings back the same
/// cluster with the same data.
struct Cluster {
    dirs: Vec<PathBuf>,
    ports: Vec<u16>,
    nodes: std::sync::Mutex<Vec<Child>>,
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn start_cluster_node(dir: &Path, port: u16) -> Child {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
        .arg("--cluster-config-file")
        .arg(dir.join("nodes.conf"))
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(dir.join("redis.log"))
                .unwrap(),
        ))
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (Debian package redis-server) must be installed");
    let deadline = Instant::now() + RECOVERY_BOUND;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(POLL);
    }
    child
}

impl Cluster {
    fn create(dir: &Path) -> Self {
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 3 {
            let p = free_cluster_port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let dirs: Vec<PathBuf> = ports
            .iter()
            .map(|p| dir.join(format!("node-{p}")))
            .collect();
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        let cluster = Self {
            dirs,
            ports,
            nodes: std::sync::Mutex::new(Vec::new()),
        };
        cluster.start();
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (Debian package redis-tools) must be installed");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_ok();
        cluster
    }

    /// Starts every node (again) on its port, directory and `nodes.conf`.
    fn start(&self) {
        let mut nodes = self.nodes.lock().unwrap();
        for (dir, port) in self.dirs.iter().zip(&self.ports) {
            nodes.push(start_cluster_node(dir, *port));
        }
    }

    /// Every node reports `cluster_state:ok`.
    fn wait_ok(&self) {
        let deadline = Instant::now() + RECOVERY_BOUND;
        loop {
            let ok = self.ports.iter().all(|p| {
                Command::new("redis-cli")
                    .args(["-h", "127.0.0.1", "-p", &p.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL to every master at once.
    fn kill(&self) {
        for mut node in self.nodes.lock().unwrap().drain(..) {
            node.kill().unwrap();
            node.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        let addrs: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis-cluster://{}", addrs.join(","))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(mut nodes) = self.nodes.lock() {
            for mut node in nodes.drain(..) {
                let _ = node.kill();
                let _ = node.wait();
            }
        }
    }
}

/// Every master of the cluster is killed under load (so the session key,
/// its handle and its user index are all gone, whichever slots they hash
/// to) and restarted with its `nodes.conf`: 503 meanwhile, recovery
/// without restarting tessera, and the old session works again.
#[tokio::test]
async fn redis_cluster_outage_is_503_and_recovers_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Arc::new(Cluster::create(dir.path()));
    let (c1, c2) = (cluster.clone(), cluster.clone());
    outage_and_recovery(
        &cluster.url(),
        &[],
        move || c1.kill(),
        move || {
            c2.start();
            c2.wait_ok();
        },
    )
    .await;
}
