//! Device Bound Session Credentials over real HTTP against `tessera serve`,
//! every scenario on SQLite and on Redis. Chromium exercises DBSC only with
//! a TPM, so the client is the repository's browser-free simulator
//! ([`tessera::testkit::dbsc_sim::Device`], a real ES256 key), carried over
//! HTTP by [`Browser`].
//!
//! The test servers run on plain HTTP (`insecure_http`), so the cookies are
//! `session` and `tessera-dbsc` (no `__Host-` prefix, no `Secure`).

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tessera::testkit::dbsc_sim::{Device, DeviceKey, DeviceRequest, RefreshStep, response_field};

use crate::backends::{required_env, unique};
use crate::common::{Server, client, get_text, metric, session_cookie};

/// Header fields as the simulator reads them.
fn fields(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

fn pairs(fields: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> + Clone {
    fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A browser: its session cookie and its DBSC client.
struct Browser {
    session: String,
    device: Device,
}

impl Browser {
    /// Signs the demo user in (JSON sign-in), as a browser would, and reads
    /// the registration offer.
    async fn sign_in(server: &Server) -> Self {
        let res = client()
            .post(server.at("/login"))
            .header("sec-fetch-site", "same-origin")
            .json(
                &json!({"username": "demo", "password": server.demo_password.as_deref().unwrap()}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let session = session_cookie(res.headers()).expect("sign-in sets the session cookie");
        // Both spellings, the same value (a browser ignores the one it does
        // not know).
        assert_eq!(
            header(res.headers(), "secure-session-registration"),
            header(res.headers(), "sec-session-registration")
        );
        let mut device = Device::new(DeviceKey::generate());
        device.observe_headers(pairs(&fields(res.headers())));
        Self { session, device }
    }

    fn cookies(&self) -> String {
        match self.device.bound_cookie() {
            Some((name, value)) => format!("session={}; {name}={value}", self.session),
            None => format!("session={}", self.session),
        }
    }

    /// `POST path` with this browser's cookies, as a same-origin fetch.
    async fn post(
        &self,
        server: &Server,
        path: &str,
        extra: &[(String, String)],
    ) -> reqwest::Response {
        let mut req = client()
            .post(server.at(path))
            .header("cookie", self.cookies())
            .header("sec-fetch-site", "same-origin");
        for (name, value) in extra {
            req = req.header(name, value);
        }
        req.send().await.unwrap()
    }

    async fn send(&self, server: &Server, req: &DeviceRequest) -> reqwest::Response {
        self.post(server, &req.path, &req.headers).await
    }

    /// Registers with the sign-in offer; the simulator checks the answer
    /// (session config, bound cookie whose attributes equal the config's).
    async fn register(&mut self, server: &Server) {
        let req = self
            .device
            .registration_request()
            .expect("a registration offer");
        assert_eq!(req.path, "/dbsc/register");
        let res = self.send(server, &req).await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            header(res.headers(), "cache-control").as_deref(),
            Some("no-store")
        );
        let headers = fields(res.headers());
        let body = res.text().await.unwrap();
        let config: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            config["credentials"][0]["attributes"],
            "Path=/; HttpOnly; SameSite=Strict"
        );
        assert_eq!(config["refresh_url"], "/dbsc/refresh");
        self.device
            .on_registration_response(200, pairs(&headers), &body)
            .unwrap();
    }

    /// One refresh request and what it meant; the raw status beside it.
    async fn refresh_once(&mut self, server: &Server) -> (u16, RefreshStep) {
        let req = self.device.refresh_request().expect("registered");
        let res = self.send(server, &req).await;
        let status = res.status().as_u16();
        let headers = fields(res.headers());
        let body = res.text().await.unwrap();
        (
            status,
            self.device
                .on_refresh_response(status, pairs(&headers), &body),
        )
    }

    /// The browser's whole refresh: ask, get a challenge, prove.
    async fn refresh(&mut self, server: &Server) -> RefreshStep {
        let (_, step) = self.refresh_once(server).await;
        if step != RefreshStep::Challenged {
            return step;
        }
        self.refresh_once(server).await.1
    }

    /// `GET /session` with this browser's cookies: status and body.
    async fn page(&self, server: &Server) -> (u16, Value) {
        let res = client()
            .get(server.at("/session"))
            .header("cookie", self.cookies())
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Forward auth with this browser's cookies: (status, tier header).
    async fn forward(&self, server: &Server, require_bound: bool) -> (u16, Option<String>) {
        let mut req = client()
            .get(server.at("/v1/auth/verify"))
            .header("cookie", self.cookies())
            .header("x-forwarded-method", "GET");
        if require_bound {
            req = req.header("x-tessera-require-tier", "bound");
        }
        let res = req.send().await.unwrap();
        (
            res.status().as_u16(),
            header(res.headers(), "x-tessera-session-tier"),
        )
    }

    /// A registration POST carrying `jwt` as its proof.
    async fn post_registration(&self, server: &Server, jwt: &str) -> reqwest::Response {
        let proof = [("secure-session-response".to_owned(), response_field(jwt))];
        self.post(server, "/dbsc/register", &proof).await
    }

    /// A refresh POST for this device's DBSC session carrying `jwt`.
    async fn post_refresh_proof(&self, server: &Server, jwt: &str) -> reqwest::Response {
        let id = format!("\"{}\"", self.device.session_id().unwrap());
        let fields = [
            ("sec-secure-session-id".to_owned(), id),
            ("secure-session-response".to_owned(), response_field(jwt)),
        ];
        self.post(server, "/dbsc/refresh", &fields).await
    }
}

fn sqlite(mode: &str) -> Server {
    Server::start(&[("TESSERA_DBSC", mode)])
}

fn redis(mode: &str) -> Server {
    let url = required_env("TESSERA_TEST_REDIS_URL");
    let prefix = format!("{}:", unique("tessera-dbsc"));
    let dir = tempfile::tempdir().unwrap();
    // Users and API keys in the file the CLI of `Server::cli` opens.
    let users = format!("sqlite://{}", dir.path().join("tessera.db").display());
    Server::start_on(
        dir,
        &url,
        &[
            ("TESSERA_DBSC", mode),
            ("TESSERA_STORE_KEY_PREFIX", &prefix),
            ("TESSERA_DATABASE", &users),
        ],
    )
}

/// One test per store for each scenario.
macro_rules! on_each_store {
    ($($scenario:ident($mode:literal)),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::sqlite($mode)).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::redis($mode)).await;
                }
            )*
        }
    };
}

on_each_store! {
    stolen_cookies_stop_working("required"),
    proof_from_another_key_revokes("additive"),
    bad_registration_proofs_are_refused("required"),
    refresh_challenges_and_recovers("required"),
    concurrent_refreshes("required"),
    sign_out_ends_the_device_session("required"),
    additive_serves_and_counts("additive"),
    v1_reports_and_enforces_the_tier("required"),
    off_changes_nothing("off"),
}

/// Registration, use, expiry of the bound cookie, refresh — and the thief:
/// a copy of both cookies works until the bound cookie expires (at most
/// `dbsc_cookie_lifetime`), then stops, while the real device keeps going
/// by refreshing with its key. No new sign-in at any point.
async fn stolen_cookies_stop_working(mut server: Server) {
    let mut browser = Browser::sign_in(&server).await;
    // Signed in, not yet bound: served (nothing to prove yet).
    assert_eq!(
        browser.forward(&server, false).await,
        (200, Some("unbound".into()))
    );
    browser.register(&server).await;
    assert_eq!(browser.page(&server).await.0, 200);
    assert_eq!(
        browser.forward(&server, false).await,
        (200, Some("bound".into()))
    );
    assert_eq!(
        browser.forward(&server, true).await,
        (200, Some("bound".into()))
    );

    // Malware copies the cookie jar: it works for now.
    let mut thief = Browser {
        session: browser.session.clone(),
        device: browser.device.stolen_by(DeviceKey::generate()),
    };
    assert_eq!(thief.page(&server).await.0, 200);

    // Past the bound cookie's lifetime (enforced in the store, whatever the
    // copy's Max-Age says), neither is served without a refresh.
    server.advance(Duration::from_secs(601));
    let (status, body) = thief.page(&server).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("device_unbound"))
    );
    assert_eq!(thief.forward(&server, false).await.0, 401);
    assert_eq!(browser.page(&server).await.0, 401);

    // The real device refreshes with its key and is back, same session.
    assert_eq!(browser.refresh(&server).await, RefreshStep::Refreshed);
    assert_eq!(browser.page(&server).await.0, 200);
    assert_eq!(
        browser.forward(&server, true).await,
        (200, Some("bound".into()))
    );

    // The thief's refresh (signed by its own key, not naming it) gets only
    // new challenges, never a cookie, and its old bound cookie stays dead.
    assert_eq!(thief.refresh(&server).await, RefreshStep::Challenged);
    assert_eq!(
        thief.refresh_once(&server).await,
        (403, RefreshStep::Challenged)
    );
    assert_eq!(thief.page(&server).await.0, 401);
    // The session cookie alone, as a bearer token, is no way around it.
    let res = client()
        .get(server.at("/v1/auth/verify"))
        .bearer_auth(&thief.session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        metric(
            &server,
            "tessera_dbsc_events_total{event=\"unbound_request\"}"
        )
        .await
            >= 3.0
    );
}

/// A proof valid under a key it names that is not the bound one,
/// presented with the session's cookies: the session is revoked, audited
/// and counted; the device session ends.
async fn proof_from_another_key_revokes(server: Server) {
    let mut browser = Browser::sign_in(&server).await;
    browser.register(&server).await;
    let (status, step) = browser.refresh_once(&server).await;
    assert_eq!((status, step), (403, RefreshStep::Challenged));
    // The challenge the device now holds, answered with another key that
    // names itself (a registration-style proof with its own `jwk`).
    let challenge = {
        let req = browser.device.clone().refresh_request().unwrap();
        let (_, proof) = req
            .headers
            .iter()
            .find(|(n, _)| n == "secure-session-response")
            .unwrap();
        let jwt = proof.trim_matches('"');
        let claims = jwt.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims)
                .unwrap(),
        )
        .unwrap();
        claims["jti"].as_str().unwrap().to_owned()
    };
    let thief_key = DeviceKey::generate();
    let res = browser
        .post_refresh_proof(&server, &thief_key.registration_proof(&challenge))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"continue": false})
    );
    let (status, body) = browser.page(&server).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("revoked")));
    assert!(server.logs().contains("dbsc_key_mismatch"), "audited");
    assert_eq!(
        metric(&server, "tessera_dbsc_events_total{event=\"key_mismatch\"}").await,
        1.0
    );
}

/// Registration proofs that do not count change nothing, and the genuine
/// one still counts after them — once.
async fn bad_registration_proofs_are_refused(mut server: Server) {
    let mut browser = Browser::sign_in(&server).await;
    let offer = browser.device.clone().registration_request().unwrap();
    let (_, good) = &offer.headers[0];
    let good = good.trim_matches('"').to_owned();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            good.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let challenge = claims["jti"].as_str().unwrap().to_owned();
    let key = browser.device.key().clone();
    let header = json!({"typ": "dbsc+jwt", "alg": "ES256", "jwk": key.jwk()});

    // A flipped signature bit.
    let (head, sig) = good.rsplit_once('.').unwrap();
    let mut sig = sig.as_bytes().to_vec();
    sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
    let forged = format!("{head}.{}", String::from_utf8(sig).unwrap());
    let res = browser.post_registration(&server, &forged).await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "dbsc_proof_refused"
    );
    // An algorithm that is not offered, and `none`.
    for alg in ["HS256", "none"] {
        let mut h = header.clone();
        h["alg"] = json!(alg);
        let jwt = key.sign(h, json!({"jti": challenge}));
        assert_eq!(
            browser.post_registration(&server, &jwt).await.status(),
            400,
            "{alg}"
        );
    }
    // A wrong jti.
    let res = browser
        .post_registration(&server, &key.registration_proof("not-the-challenge"))
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "dbsc_challenge_unknown"
    );
    // No proof at all.
    let res = browser.post(&server, "/dbsc/register", &[]).await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "dbsc_proof_missing"
    );
    // Cross-site: refused by the origin check, whatever the proof.
    let res = client()
        .post(server.at("/dbsc/register"))
        .header("cookie", browser.cookies())
        .header("sec-fetch-site", "cross-site")
        .header("secure-session-response", response_field(&good))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Nothing was bound: the session is served unbound.
    assert_eq!(
        browser.forward(&server, false).await,
        (200, Some("unbound".into()))
    );

    // The genuine proof still counts once…
    browser.register(&server).await;
    // …and only once: a replay is refused, and a thief's own key cannot
    // re-register the bound session.
    let res = browser.post_registration(&server, &good).await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "dbsc_already_bound"
    );
    let res = browser
        .post_registration(
            &server,
            &DeviceKey::generate().registration_proof(&challenge),
        )
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "dbsc_already_bound"
    );

    // A stale challenge: a new sign-in's offer answered after its lifetime.
    let mut late = Browser::sign_in(&server).await;
    server.advance(Duration::from_secs(301));
    let req = late.device.registration_request().unwrap();
    let res = late.send(&server, &req).await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "dbsc_challenge_unknown"
    );
    assert_eq!(
        late.forward(&server, false).await,
        (200, Some("unbound".into()))
    );
}

/// Refresh: without a proof a challenge; replayed, wrong and stale
/// challenges get a new one (never anything but 403 or 200); a lost
/// response is recovered by the next refresh; legacy field names work.
async fn refresh_challenges_and_recovers(mut server: Server) {
    let mut browser = Browser::sign_in(&server).await;
    browser.register(&server).await;
    let key = browser.device.key().clone();
    let challenge_in = |res: &reqwest::Response| -> String {
        assert_eq!(res.status(), 403);
        let field = header(res.headers(), "secure-session-challenge").expect("a challenge");
        assert_eq!(
            Some(&field),
            header(res.headers(), "sec-session-challenge").as_ref()
        );
        tessera::testkit::dbsc_sim::challenge_of(&field).unwrap()
    };
    let id = [(
        "sec-secure-session-id".to_owned(),
        format!("\"{}\"", browser.device.session_id().unwrap()),
    )];
    let first = challenge_in(&browser.post(&server, "/dbsc/refresh", &id).await);
    // A proof for a challenge never issued: a new challenge, not an error.
    let second = challenge_in(
        &browser
            .post_refresh_proof(&server, &key.refresh_proof("made-up"))
            .await,
    );
    // A slightly older challenge (two refreshes raced) still counts.
    let res = browser
        .post_refresh_proof(&server, &key.refresh_proof(&first))
        .await;
    assert_eq!(res.status(), 200);
    // …once: replayed, it is refused with a new challenge.
    challenge_in(
        &browser
            .post_refresh_proof(&server, &key.refresh_proof(&first))
            .await,
    );
    // A stale one (past its lifetime) is refused too.
    server.advance(Duration::from_secs(301));
    challenge_in(
        &browser
            .post_refresh_proof(&server, &key.refresh_proof(&second))
            .await,
    );

    // A refresh whose answer the browser never saw (network error): its
    // cookie is lost with it; the next refresh starts over and succeeds,
    // with no new sign-in.
    server.advance(Duration::from_secs(601));
    let mut lost = Browser {
        session: browser.session.clone(),
        device: browser.device.clone(),
    };
    assert_eq!(lost.refresh(&server).await, RefreshStep::Refreshed);
    assert_eq!(browser.page(&server).await.0, 401);
    assert_eq!(browser.refresh(&server).await, RefreshStep::Refreshed);
    assert_eq!(browser.page(&server).await.0, 200);

    // The legacy `Sec-Session-*` names, for browsers of the origin trial.
    let mut legacy = Browser {
        session: browser.session.clone(),
        device: browser.device.clone().with_legacy_names(true),
    };
    server.advance(Duration::from_secs(601));
    assert_eq!(legacy.refresh(&server).await, RefreshStep::Refreshed);
    assert_eq!(legacy.page(&server).await.0, 200);

    // A refresh naming another DBSC session id ends it.
    let other = [("sec-secure-session-id".to_owned(), "\"other\"".to_owned())];
    let res = legacy.post(&server, "/dbsc/refresh", &other).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"continue": false})
    );
}

/// Ten refreshes of one device, each with its own challenge: every one
/// succeeds (challenges are per refresh, single-use); one challenge
/// answered twice at once succeeds exactly once.
async fn concurrent_refreshes(mut server: Server) {
    let mut browser = Browser::sign_in(&server).await;
    browser.register(&server).await;
    server.advance(Duration::from_secs(601));
    let mut devices = Vec::new();
    for _ in 0..10 {
        let mut device = browser.device.clone();
        let req = device.refresh_request().unwrap();
        let res = browser.send(&server, &req).await;
        let status = res.status().as_u16();
        let headers = fields(res.headers());
        let step = device.on_refresh_response(status, pairs(&headers), "");
        assert_eq!(step, RefreshStep::Challenged);
        devices.push(device);
    }
    // The same challenge answered twice at once: exactly one succeeds.
    let twice = devices[0].refresh_request().unwrap();
    let (a, b) = tokio::join!(browser.send(&server, &twice), browser.send(&server, &twice));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 403]);
    // The nine others concurrently: all succeed.
    let requests: Vec<DeviceRequest> = devices[1..]
        .iter_mut()
        .map(|d| d.refresh_request().unwrap())
        .collect();
    let answers =
        futures_util::future::join_all(requests.iter().map(|r| browser.send(&server, r))).await;
    for (res, device) in answers.into_iter().zip(devices[1..].iter_mut()) {
        let status = res.status().as_u16();
        let headers = fields(res.headers());
        assert_eq!(
            device.on_refresh_response(status, pairs(&headers), ""),
            RefreshStep::Refreshed
        );
    }
    let last = Browser {
        session: browser.session.clone(),
        device: devices.pop().unwrap(),
    };
    assert_eq!(last.page(&server).await.0, 200);
}

/// After sign-out the device session ends (`continue: false`); a
/// signed-out cookie never gets a challenge.
async fn sign_out_ends_the_device_session(server: Server) {
    let mut browser = Browser::sign_in(&server).await;
    browser.register(&server).await;
    let (_, page) = browser.page(&server).await;
    let csrf = page["csrf_token"].as_str().unwrap().to_owned();
    let res = client()
        .post(server.at("/logout"))
        .header("cookie", browser.cookies())
        .header("sec-fetch-site", "same-origin")
        .header("x-csrf-token", csrf)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_success() || res.status().is_redirection(),
        "{}",
        res.status()
    );
    let (status, step) = browser.refresh_once(&server).await;
    assert_eq!((status, step), (200, RefreshStep::Ended));
}

/// Additive mode: a bound session's request without its bound cookie is
/// served, logged and counted; `Secure-Session-Skipped` is recorded; the
/// tier still tells a backend which requests proved the device.
async fn additive_serves_and_counts(mut server: Server) {
    let mut browser = Browser::sign_in(&server).await;
    browser.register(&server).await;
    server.advance(Duration::from_secs(601));
    assert_eq!(browser.page(&server).await.0, 200);
    assert_eq!(
        browser.forward(&server, false).await,
        (200, Some("unbound".into()))
    );
    // A sensitive location demands a bound request whatever the mode.
    assert_eq!(browser.forward(&server, true).await.0, 401);
    assert!(
        metric(
            &server,
            "tessera_dbsc_events_total{event=\"unbound_request\"}"
        )
        .await
            >= 2.0
    );
    let res = client()
        .get(server.at("/session"))
        .header("cookie", browser.cookies())
        .header("secure-session-skipped", "unreachable")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        metric(
            &server,
            "tessera_dbsc_events_total{event=\"refresh_skipped\"}"
        )
        .await,
        1.0
    );
    // Behind a proxy: forward auth sees the browser's fields too.
    let res = client()
        .get(server.at("/v1/auth/verify"))
        .header("cookie", browser.cookies())
        .header("x-forwarded-method", "GET")
        .header("secure-session-skipped", "server_error")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        metric(
            &server,
            "tessera_dbsc_events_total{event=\"refresh_skipped\"}"
        )
        .await,
        2.0
    );
    assert_eq!(browser.refresh(&server).await, RefreshStep::Refreshed);
    assert_eq!(
        browser.forward(&server, true).await,
        (200, Some("bound".into()))
    );
}

/// `/v1` for backends in other languages: the tier in
/// `/v1/sessions/verify` and `/v1/requests/check`, `require_tier`, and the
/// required-mode refusal.
async fn v1_reports_and_enforces_the_tier(mut server: Server) {
    let key = server.api_key();
    let mut browser = Browser::sign_in(&server).await;
    browser.register(&server).await;
    let verify_url = server.at("/v1/sessions/verify");
    let verify = |body: Value| {
        client()
            .post(&verify_url)
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let bound = browser.device.bound_cookie().unwrap().1.to_owned();
    let res =
        verify(json!({"token": browser.session, "dbsc_cookie": bound, "require_tier": "bound"}))
            .await
            .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["tier"], "bound");
    let res = verify(json!({"token": browser.session})).await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.unwrap()["reason"],
        "device_unbound"
    );
    let res = verify(json!({"token": browser.session, "require_tier": "gold"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    let check_url = server.at("/v1/requests/check");
    let check = |cookie: String| {
        client()
            .post(&check_url)
            .bearer_auth(&key)
            .json(&json!({"method": "GET", "cookie": cookie}))
            .send()
    };
    let answer: Value = check(browser.cookies())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["outcome"], "session");
    assert_eq!(answer["session"]["tier"], "bound");
    server.advance(Duration::from_secs(601));
    let answer: Value = check(browser.cookies())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["outcome"], "no_session");
    assert_eq!(answer["reason"], "device_unbound");
    // The session cookie is not cleared: the session lives on, and the
    // device's refresh restores it.
    assert_eq!(answer["set_cookie"], json!([]));
    assert_eq!(browser.refresh(&server).await, RefreshStep::Refreshed);
    let answer: Value = check(browser.cookies())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["session"]["tier"], "bound");
}

/// Off (the default): no offer, no endpoints, everything `unbound`.
async fn off_changes_nothing(server: Server) {
    let mut browser = Browser::sign_in(&server).await;
    assert!(browser.device.registration_request().is_none());
    let res = browser.post_registration(&server, "x.y.z").await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        browser.forward(&server, false).await,
        (200, Some("unbound".into()))
    );
    assert!(
        get_text(&server, "/metrics")
            .await
            .contains("tessera_dbsc_events_total")
    );
}
