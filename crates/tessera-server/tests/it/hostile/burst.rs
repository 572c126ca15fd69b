//! 10,000 forged tokens, in parallel: clean 4xx answers, no store call for
//! malformed tokens, bounded memory, and valid sessions served throughout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use tokio::task::JoinSet;

use super::client::{delta, sign_in, store_calls};
use crate::common::{SECURE_COOKIE, Server, client};

const FORGED: usize = 10_000;
/// Well-formed (checksum-valid) but unknown tokens mixed in: these must
/// reach the store, which shows the counter really counts lookups.
const WELL_FORMED_UNKNOWN: usize = 100;
const CONCURRENCY: usize = 64;

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).unwrap();
    b
}

fn random_below(n: usize) -> usize {
    let bytes: [u8; 4] = random_bytes(4).try_into().unwrap();
    usize::try_from(u32::from_le_bytes(bytes)).unwrap() % n
}

/// A malformed token of one of several shapes: a right-looking token with a
/// bad checksum, wrong lengths, the wrong prefix or alphabet, printable junk.
fn forged(i: usize) -> String {
    match i % 6 {
        // The exact shape of a real token; the checksum fails (1 - 2^-32).
        0 => format!("tss_{}", URL_SAFE_NO_PAD.encode(random_bytes(36))),
        1 => format!(
            "tss_{}",
            URL_SAFE_NO_PAD.encode(random_bytes(1 + random_below(80)))
        ),
        2 => format!("tsk_{}", URL_SAFE_NO_PAD.encode(random_bytes(36))),
        3 => format!("tss_{}", STANDARD.encode(random_bytes(36))),
        4 => URL_SAFE_NO_PAD.encode(random_bytes(random_below(300))),
        // Printable ASCII a cookie value may carry, minus ';' and ','.
        _ => random_bytes(1 + random_below(200))
            .into_iter()
            .map(|b| char::from(b'!' + b % 90))
            .filter(|c| !matches!(c, ';' | ',' | '\\' | '"'))
            .collect(),
    }
}

/// One forged request against one of the token-accepting routes; returns
/// the status and checks the answer is a clean JSON 4xx.
async fn send_forged(
    c: &reqwest::Client,
    base: &str,
    key: &str,
    i: usize,
    token: &str,
) -> Result<u16, String> {
    let cookie = format!("{SECURE_COOKIE}={token}");
    let req = match i % 5 {
        0 => c.get(format!("{base}/session")).header("cookie", cookie),
        1 => c
            .get(format!("{base}/v1/auth/verify"))
            .header("cookie", cookie),
        2 => c
            .post(format!("{base}/v1/sessions/verify"))
            .bearer_auth(key)
            .json(&serde_json::json!({"token": token})),
        3 => c
            .get(format!("{base}/sessions"))
            .header("accept", "application/json")
            .header("cookie", cookie),
        _ => c
            .post(format!("{base}/session/keepalive"))
            .header("accept", "application/json")
            .header("x-csrf-token", "forged")
            .header("cookie", cookie),
    };
    let res = req
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = res.status().as_u16();
    let ctype = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = res.text().await.map_err(|e| e.to_string())?;
    if !(400..500).contains(&status) {
        return Err(format!("status {status} for {token:?}: {body}"));
    }
    let json: Value = serde_json::from_str(&body)
        .map_err(|e| format!("status {status}, not JSON ({e}, {ctype}): {body}"))?;
    if json["error"].as_str().is_none() {
        return Err(format!("no error code: {body}"));
    }
    Ok(status)
}

/// Store calls made by `n` repetitions of `request`, per repetition.
async fn calls_per_request<F, Fut>(server: &Server, n: u64, mut request: F) -> BTreeMap<String, u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let before = store_calls(server).await;
    for _ in 0..n {
        request().await;
    }
    let d = delta(&before, &store_calls(server).await);
    d.into_iter()
        .map(|(op, total)| {
            assert_eq!(
                total % n,
                0,
                "uneven store calls for {op}: {total} over {n}"
            );
            (op, total / n)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_forged_tokens() {
    let server = Server::start_secure(&[]);
    let (ok, out, err) = server.cli(&["api-key", "create", "backend"], None);
    assert!(ok, "{err}");
    let key = out.trim().to_owned();
    let token = sign_in(&server).await;
    let c = client();
    let base = server.url.clone();

    // What a valid status query and a well-formed unknown token cost in
    // store calls, measured on their own first.
    let valid_cookie = format!("{SECURE_COOKIE}={token}");
    let per_valid = calls_per_request(&server, 20, || {
        let req = c
            .get(server.at("/session"))
            .header("cookie", valid_cookie.clone());
        async move {
            assert_eq!(req.send().await.unwrap().status(), 200);
        }
    })
    .await;
    assert!(
        !per_valid.is_empty(),
        "a valid request made no store call: the counter does not count"
    );
    let unknown: Vec<String> = (0..WELL_FORMED_UNKNOWN)
        .map(|_| {
            tessera::token::SessionToken::generate()
                .unwrap()
                .expose()
                .to_owned()
        })
        .collect();
    // Each forged-route kind is used evenly by index below, so calibrate
    // the unknown tokens over the same routes.
    let mut per_unknown_total: BTreeMap<String, u64> = BTreeMap::new();
    let before = store_calls(&server).await;
    for (i, t) in unknown.iter().enumerate().take(10) {
        let status = send_forged(&c, &base, &key, i, t).await.unwrap();
        assert_eq!(status, 401);
    }
    for (op, n) in delta(&before, &store_calls(&server).await) {
        per_unknown_total.insert(op, n);
    }
    assert!(
        !per_unknown_total.is_empty(),
        "well-formed unknown tokens made no store call"
    );

    let rss_before = server.rss_kib();
    let before = store_calls(&server).await;

    // Valid traffic during the burst: every answer must be 200.
    let done = Arc::new(AtomicBool::new(false));
    let valid_served = Arc::new(AtomicUsize::new(0));
    let valid = {
        let (c, url, cookie) = (c.clone(), server.at("/session"), valid_cookie.clone());
        let (done, served) = (done.clone(), valid_served.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            loop {
                let res = c.get(&url).header("cookie", cookie.clone()).send().await;
                match res {
                    Ok(r) if r.status() == 200 => {
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(e.to_string()),
                }
                if done.load(Ordering::SeqCst) {
                    break;
                }
            }
            failures
        })
    };

    // The burst: 10,000 malformed tokens plus the well-formed unknown ones
    // (the unknown ones again from index 10, evenly over the routes).
    let jobs: Arc<Vec<(usize, String)>> = Arc::new(
        (0..FORGED)
            .map(|i| (i, forged(i)))
            .chain(
                unknown
                    .iter()
                    .skip(10)
                    .cloned()
                    .enumerate()
                    .map(|(i, t)| (i + 10, t)),
            )
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (c, base, key, jobs, next) = (
            c.clone(),
            base.clone(),
            key.clone(),
            jobs.clone(),
            next.clone(),
        );
        workers.spawn(async move {
            let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
            let mut errors = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some((i, token)) = jobs.get(n) else { break };
                match send_forged(&c, &base, &key, *i, token).await {
                    Ok(s) => *counts.entry(s).or_default() += 1,
                    Err(e) => errors.push(e),
                }
            }
            (counts, errors)
        });
    }
    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    let mut errors = Vec::new();
    while let Some(r) = workers.join_next().await {
        let (cs, es) = r.unwrap();
        for (s, n) in cs {
            *counts.entry(s).or_default() += n;
        }
        errors.extend(es);
    }
    done.store(true, Ordering::SeqCst);
    let valid_failures = valid.await.unwrap();
    let served = valid_served.load(Ordering::SeqCst) as u64;

    assert!(
        errors.is_empty(),
        "{} of {} forged requests were not a clean JSON 4xx; first: {:?}",
        errors.len(),
        jobs.len(),
        errors.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(counts.values().sum::<usize>(), jobs.len());
    assert!(
        valid_failures.is_empty(),
        "valid requests failed during the burst: {valid_failures:?}"
    );
    assert!(served > 0, "no valid request was served during the burst");

    // Store calls: exactly those of the valid requests and the well-formed
    // unknown tokens; none for the 10,000 malformed ones.
    let unknown_in_burst = (WELL_FORMED_UNKNOWN - 10) as u64;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (op, n) in &per_valid {
        *expected.entry(op.clone()).or_default() += n * served;
    }
    for (op, n) in &per_unknown_total {
        // Calibrated over 10 tokens on the same route mix.
        *expected.entry(op.clone()).or_default() += n * unknown_in_burst / 10;
    }
    let actual = delta(&before, &store_calls(&server).await);
    assert_eq!(
        actual, expected,
        "store calls during the burst ({served} valid requests, {unknown_in_burst} \
         well-formed unknown tokens, {FORGED} malformed) differ from what the valid \
         and well-formed requests alone make"
    );

    // Memory: bounded (a generous limit; it catches per-request leaks and
    // unbounded caches of rejected tokens, not allocator noise).
    let rss_after = server.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB over {} forged requests",
        jobs.len()
    );
    eprintln!(
        "burst: {counts:?}; {served} valid requests served meanwhile; RSS {rss_before} -> \
         {rss_after} KiB; store calls {actual:?}"
    );
}
