//! Load generator for the sign-in figures in docs/security.md: fires N
//! concurrent `POST /login` requests at a running `tessera serve` and
//! reports the answers, the password checks actually evaluated and, given
//! the server's process id, its resident-memory high-water mark (`VmHWM`
//! from `/proc/PID/status`) before and after.
//!
//! ```text
//! # 200 concurrent sign-ins with made-up user names:
//! cargo run --release -p tessera-server --example signin_flood -- \
//!     --url http://127.0.0.1:8080 --pid 12345 --mode unknown --n 200
//! # 40 concurrent wrong passwords for one user:
//! cargo run --release -p tessera-server --example signin_flood -- \
//!     --url http://127.0.0.1:8080 --mode guess --user demo --n 40
//! ```
//!
//! Evaluated guesses are the 401 answers (each is one Argon2 verification
//! that ran); the server's `tessera_password_verifications_total` counter,
//! where it exists, is printed too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn verifications(client: &reqwest::Client, url: &str) -> Option<u64> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("tessera_password_verifications_total "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::main]
async fn main() {
    let mut url = String::from("http://127.0.0.1:8080");
    let mut pid: Option<u32> = None;
    let mut mode = String::from("unknown");
    let mut user = String::from("demo");
    let mut n: usize = 200;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => url = value.trim_end_matches('/').to_owned(),
            "--pid" => pid = Some(value.parse().expect("--pid is a number")),
            "--mode" => mode = value,
            "--user" => user = value,
            "--n" => n = value.parse().expect("--n is a number"),
            other => panic!("unknown argument {other}"),
        }
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let before_hwm = pid.and_then(vm_hwm_kib);
    let before_checks = verifications(&client, &url).await;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let client = client.clone();
            let url = format!("{url}/login");
            let name = match mode.as_str() {
                "unknown" => format!("nobody-{i}-{}", std::process::id()),
                "guess" => user.clone(),
                other => panic!("--mode is unknown or guess, not {other}"),
            };
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&serde_json::json!({"username": name, "password": format!("wrong-password-{i}")}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        let key = match t.await.unwrap() {
            Ok(status) => status.to_string(),
            Err(e) => format!("no answer ({e})"),
        };
        *answers.entry(key).or_default() += 1;
    }
    let after_checks = verifications(&client, &url).await;
    println!("mode {mode}, {n} concurrent sign-ins");
    for (status, count) in &answers {
        println!("  {status}: {count}");
    }
    println!(
        "evaluated guesses (401 answers): {}",
        answers.get("401").copied().unwrap_or(0)
    );
    if let (Some(a), Some(b)) = (before_checks, after_checks) {
        println!("password verifications run (server counter): {}", b - a);
    }
    if let (Some(pid), Some(before)) = (pid, before_hwm) {
        let after = vm_hwm_kib(pid).unwrap_or(0);
        println!(
            "VmHWM of pid {pid}: {} MiB before, {} MiB after (+{} MiB)",
            before / 1024,
            after / 1024,
            after.saturating_sub(before) / 1024
        );
    }
}
