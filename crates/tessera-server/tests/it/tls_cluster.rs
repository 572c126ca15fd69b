//! `rediss-cluster://`: a real three-node Redis Cluster that only speaks
//! TLS (`redis-server` built with TLS, as Debian's is; certificates made
//! with the `openssl` command, installed by the test script), its CA given
//! to the server with `SSL_CERT_FILE`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Server, client, cookie_header, demo_login, run_cli_with};

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA and a node certificate for 127.0.0.1 in `dir`.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| run(Command::new("openssl").current_dir(dir).args(args));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=tessera test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
}

fn free_port() -> u16 {
    // Cluster bus ports are port + 10000: keep below 55536.
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 55_000 {
            return port;
        }
    }
}

fn redis_cli(dir: &Path, port: u16, args: &[&str]) -> std::process::Output {
    Command::new("redis-cli")
        .current_dir(dir)
        .args(["--tls", "--cacert", "ca.crt", "-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(args)
        .output()
        .unwrap()
}

/// Three TLS-only cluster nodes with all slots assigned.
fn start_cluster(dir: &Path) -> (Nodes, Vec<u16>) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes = Nodes(Vec::new());
    for port in &ports {
        let node = dir.join(format!("node-{port}"));
        std::fs::create_dir_all(&node).unwrap();
        let child = Command::new("redis-server")
            .current_dir(&node)
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
            .args([
                "--tls-cert-file",
                "../node.crt",
                "--tls-key-file",
                "../node.key",
            ])
            .args([
                "--tls-ca-cert-file",
                "../ca.crt",
                "--tls-auth-clients",
                "no",
            ])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (with TLS) must be installed");
        nodes.0.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in &ports {
        while !redis_cli(dir, *port, &["ping"]).stdout.starts_with(b"PONG") {
            assert!(
                Instant::now() < deadline,
                "node {port} did not answer over TLS"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut create: Vec<&str> = vec!["--cluster", "create"];
    create.extend(addrs.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    let out = redis_cli(dir, ports[0], &create);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for port in &ports {
        loop {
            let info = redis_cli(dir, *port, &["cluster", "info"]);
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    (nodes, ports)
}

#[tokio::test]
async fn rediss_cluster_serves_sessions_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let (_nodes, ports) = start_cluster(dir.path());
    let store = format!(
        "rediss-cluster://{}",
        ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let ca = dir.path().join("ca.crt").display().to_string();
    let database = format!("sqlite://{}", dir.path().join("users.db").display());

    // A CA the client does not trust: refused, nothing served.
    let (ok, _, err) = run_cli_with(
        &store,
        &["serve", "--listen", "127.0.0.1:0"],
        None,
        &[("TESSERA_DATABASE", database.as_str())],
    );
    assert!(!ok);
    assert!(err.contains("InvalidCertificate"), "{err}");

    let server = Server::start_on(
        tempfile::tempdir().unwrap(),
        &store,
        &[
            ("SSL_CERT_FILE", ca.as_str()),
            ("TESSERA_DATABASE", database.as_str()),
        ],
    );
    let s = demo_login(&server).await;
    let res = client()
        .get(server.at("/session"))
        .header("cookie", cookie_header(&s.token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The session really lives in the cluster (read back over TLS).
    let mut keys = String::new();
    for port in &ports {
        let out = redis_cli(dir.path(), *port, &["--scan", "--pattern", "tessera:s:*"]);
        keys.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    assert_eq!(keys.lines().count(), 1, "{keys}");
}
