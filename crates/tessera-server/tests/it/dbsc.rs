//! Device Bound Session Credentials over real HTTP against `tessera serve`,
//! on SQLite and on Redis. Chromium exercises DBSC only with a TPM, so the
//! client is [`Device`]: a browser-free simulator that follows the protocol
//! with a real ES256 key ([`tessera::testkit::dbsc_sim::DeviceKey`]).
//!
//! The test servers run on plain HTTP (`insecure_http`), so the cookies are
//! `session` and `tessera-dbsc` (no `__Host-` prefix, no `Secure`).

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tessera::testkit::dbsc_sim::{DeviceKey, challenge_of, response_field};

use crate::backends::{required_env, unique};
use crate::common::{METRICS_TOKEN, Server, client, get_text, session_cookie};

const BOUND: &str = "tessera-dbsc";

/// The bound cookie's `Set-Cookie` value in `headers`, whole.
fn bound_set_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{BOUND}=")))
        .map(str::to_owned)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A browser with a device key: its cookies and its DBSC session.
struct Device {
    key: DeviceKey,
    session: String,
    bound: Option<String>,
    session_id: Option<String>,
    /// The challenge of the sign-in response, until registration.
    registration: Option<String>,
    /// Use the legacy `Sec-Session-*` field names.
    legacy: bool,
}

impl Device {
    /// Signs the demo user in (JSON sign-in), as a browser would.
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
        let offer = header(res.headers(), "secure-session-registration");
        // Both spellings, the same value (a browser ignores the one it does
        // not know).
        assert_eq!(offer, header(res.headers(), "sec-session-registration"));
        if let Some(offer) = &offer {
            assert!(
                offer.starts_with("(ES256 RS256);path=\"/dbsc/register\";challenge=\""),
                "{offer}"
            );
        }
        Self {
            key: DeviceKey::generate(),
            session,
            bound: None,
            session_id: None,
            registration: offer.as_deref().and_then(challenge_of),
            legacy: false,
        }
    }

    fn cookies(&self) -> String {
        match &self.bound {
            Some(bound) => format!("session={}; {BOUND}={bound}", self.session),
            None => format!("session={}", self.session),
        }
    }

    fn response_name(&self) -> &'static str {
        if self.legacy {
            "sec-session-response"
        } else {
            "secure-session-response"
        }
    }

    /// `POST /dbsc/register` with a proof of `jwt`.
    async fn post_registration(&self, server: &Server, jwt: &str) -> reqwest::Response {
        client()
            .post(server.at("/dbsc/register"))
            .header("cookie", self.cookies())
            .header("sec-fetch-site", "same-origin")
            .header(self.response_name(), response_field(jwt))
            .send()
            .await
            .unwrap()
    }

    /// Registers with the sign-in challenge; checks the answer and keeps
    /// the bound cookie and the DBSC session id.
    async fn register(&mut self, server: &Server) -> Value {
        let challenge = self.registration.take().expect("a registration offer");
        let res = self
            .post_registration(server, &self.key.registration_proof(&challenge))
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            header(res.headers(), "cache-control").as_deref(),
            Some("no-store")
        );
        assert_eq!(
            header(res.headers(), "content-type").as_deref(),
            Some("application/json")
        );
        let set = bound_set_cookie(res.headers()).expect("registration sets the bound cookie");
        let config: Value = res.json().await.unwrap();
        // The credential's attributes are exactly those of its Set-Cookie
        // (Chromium compares them; an absent SameSite is not Lax).
        let credential = &config["credentials"][0];
        assert_eq!(credential["type"], "cookie");
        assert_eq!(credential["name"], BOUND);
        let attributes = credential["attributes"].as_str().unwrap();
        assert_eq!(attributes, "Path=/; HttpOnly; SameSite=Strict");
        let (pair, rest) = set.split_once("; ").unwrap();
        assert_eq!(rest, format!("Max-Age=600; {attributes}"));
        self.bound = Some(pair.split_once('=').unwrap().1.to_owned());
        self.session_id = Some(config["session_identifier"].as_str().unwrap().to_owned());
        assert_eq!(config["refresh_url"], "/dbsc/refresh");
        config
    }

    /// One `POST /dbsc/refresh`, with a proof answering `challenge` if
    /// given.
    async fn post_refresh(&self, server: &Server, challenge: Option<&str>) -> reqwest::Response {
        let id_name = if self.legacy {
            "sec-session-id"
        } else {
            "sec-secure-session-id"
        };
        let mut req = client()
            .post(server.at("/dbsc/refresh"))
            .header("cookie", self.cookies())
            .header("sec-fetch-site", "same-origin")
            .header(
                id_name,
                format!("\"{}\"", self.session_id.as_deref().unwrap_or("none")),
            );
        if let Some(challenge) = challenge {
            req = req.header(
                self.response_name(),
                response_field(&self.key.refresh_proof(challenge)),
            );
        }
        req.send().await.unwrap()
    }

    /// The challenge of a 403 refresh answer.
    fn challenge_in(&self, res: &reqwest::Response) -> String {
        assert_eq!(res.status(), 403);
        let name = if self.legacy {
            "sec-session-challenge"
        } else {
            "secure-session-challenge"
        };
        let field = header(res.headers(), name).expect("a challenge");
        let id = self.session_id.as_deref().unwrap();
        assert!(field.ends_with(&format!(";id=\"{id}\"")), "{field}");
        challenge_of(&field).unwrap()
    }

    /// The browser's refresh: ask, get a challenge, prove, keep the new
    /// bound cookie.
    async fn refresh(&mut self, server: &Server) {
        let res = self.post_refresh(server, None).await;
        let challenge = self.challenge_in(&res);
        let res = self.post_refresh(server, Some(&challenge)).await;
        assert_eq!(res.status(), 200);
        let set = bound_set_cookie(res.headers()).expect("a refreshed bound cookie");
        let value = set.split(';').next().unwrap().split_once('=').unwrap().1;
        assert_ne!(
            Some(value),
            self.bound.as_deref(),
            "a new value each refresh"
        );
        self.bound = Some(value.to_owned());
        let config: Value = res.json().await.unwrap();
        assert_eq!(
            config["session_identifier"].as_str(),
            self.session_id.as_deref()
        );
    }

    /// `GET /session` with this device's cookies: the status.
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

    /// Forward auth with this device's cookies: (status, tier header).
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
}

fn sqlite(mode: &str) -> Server {
    Server::start(&[("TESSERA_DBSC", mode)])
}

fn redis(mode: &str) -> Server {
    let url = required_env("TESSERA_TEST_REDIS_URL");
    let prefix = format!("{}:", unique("tessera-dbsc"));
    let dir = tempfile::tempdir().unwrap();
    let users = format!("sqlite://{}", dir.path().join("users.db").display());
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

async fn metric(server: &Server, name: &str) -> f64 {
    let text = get_text(server, "/metrics").await;
    text.lines()
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0.0)
}

/// Registration, use, expiry of the bound cookie, refresh — and the thief:
/// a copy of both cookies works until the bound cookie expires (at most
/// `dbsc_cookie_lifetime`), then stops, while the real device keeps going
/// by refreshing with its key. No new sign-in at any point.
async fn stolen_cookies_stop_working(mut server: Server) {
    let mut device = Device::sign_in(&server).await;
    // Signed in, not yet bound: served (nothing to prove yet).
    assert_eq!(
        device.forward(&server, false).await,
        (200, Some("unbound".into()))
    );
    device.register(&server).await;
    assert_eq!(device.page(&server).await.0, 200);
    assert_eq!(
        device.forward(&server, false).await,
        (200, Some("bound".into()))
    );
    assert_eq!(
        device.forward(&server, true).await,
        (200, Some("bound".into()))
    );

    // The thief copies both cookies: they work for now.
    let thief = Device {
        key: DeviceKey::generate(),
        session: device.session.clone(),
        bound: device.bound.clone(),
        session_id: device.session_id.clone(),
        registration: None,
        legacy: false,
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
    let (status, _) = device.page(&server).await;
    assert_eq!(status, 401);

    // The real device refreshes with its key and is back, same session.
    device.refresh(&server).await;
    assert_eq!(device.page(&server).await.0, 200);
    assert_eq!(
        device.forward(&server, true).await,
        (200, Some("bound".into()))
    );

    // The thief has no key: a refresh gets only a challenge, and the old
    // bound cookie stays dead.
    let res = thief.post_refresh(&server, None).await;
    assert_eq!(res.status(), 403);
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

#[tokio::test]
async fn dbsc_sqlite_stolen_cookies_stop_working() {
    stolen_cookies_stop_working(sqlite("required")).await;
}

#[tokio::test]
async fn dbsc_redis_stolen_cookies_stop_working() {
    stolen_cookies_stop_working(redis("required")).await;
}

/// A proof signed by another key, presented with the session's cookies:
/// the session is revoked, audited and counted; the device session ends.
async fn proof_from_another_key_revokes(server: Server) {
    let mut device = Device::sign_in(&server).await;
    device.register(&server).await;
    let res = device.post_refresh(&server, None).await;
    let challenge = device.challenge_in(&res);
    let thief_key = DeviceKey::generate();
    // Signed by another key without naming it: just a bad signature, a new
    // challenge, nothing attributed.
    let res = client()
        .post(server.at("/dbsc/refresh"))
        .header("cookie", device.cookies())
        .header("sec-fetch-site", "same-origin")
        .header(
            "sec-secure-session-id",
            format!("\"{}\"", device.session_id.as_deref().unwrap()),
        )
        .header(
            "secure-session-response",
            response_field(&thief_key.refresh_proof(&challenge)),
        )
        .send()
        .await
        .unwrap();
    let challenge = device.challenge_in(&res);
    // Valid under the key it names, which is not the bound one: someone
    // holding the cookies signs with their own key.
    let res = client()
        .post(server.at("/dbsc/refresh"))
        .header("cookie", device.cookies())
        .header("sec-fetch-site", "same-origin")
        .header(
            "sec-secure-session-id",
            format!("\"{}\"", device.session_id.as_deref().unwrap()),
        )
        .header(
            "secure-session-response",
            response_field(&thief_key.registration_proof(&challenge)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"continue": false})
    );
    let (status, body) = device.page(&server).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("revoked")));
    assert!(server.logs().contains("dbsc_key_mismatch"), "audited");
    assert_eq!(
        metric(&server, "tessera_dbsc_events_total{event=\"key_mismatch\"}").await,
        1.0
    );
}

#[tokio::test]
async fn dbsc_sqlite_proof_from_another_key_revokes() {
    proof_from_another_key_revokes(sqlite("additive")).await;
}

#[tokio::test]
async fn dbsc_redis_proof_from_another_key_revokes() {
    proof_from_another_key_revokes(redis("additive")).await;
}

/// Registration proofs that do not count change nothing, and the
/// challenge of one that is refused before it is checked stays usable.
#[tokio::test]
async fn dbsc_bad_registration_proofs_are_refused() {
    let mut server = sqlite("required");
    let mut device = Device::sign_in(&server).await;
    let challenge = device.registration.clone().unwrap();
    let header = json!({"typ": "dbsc+jwt", "alg": "ES256", "jwk": device.key.jwk()});

    // A flipped signature bit.
    let good = device.key.registration_proof(&challenge);
    let (head, sig) = good.rsplit_once('.').unwrap();
    let mut sig = sig.as_bytes().to_vec();
    sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
    let forged = format!("{head}.{}", String::from_utf8(sig).unwrap());
    let res = device.post_registration(&server, &forged).await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "dbsc_proof_refused"
    );

    // An algorithm that is not offered.
    let mut wrong_alg = header.clone();
    wrong_alg["alg"] = json!("HS256");
    let jwt = device.key.sign(wrong_alg, json!({"jti": challenge}));
    assert_eq!(device.post_registration(&server, &jwt).await.status(), 400);
    // `alg: none`.
    let mut none = header.clone();
    none["alg"] = json!("none");
    let jwt = device.key.sign(none, json!({"jti": challenge}));
    assert_eq!(device.post_registration(&server, &jwt).await.status(), 400);
    // A wrong jti.
    let jwt = device.key.registration_proof("not-the-challenge");
    let res = device.post_registration(&server, &jwt).await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "dbsc_challenge_unknown"
    );
    // No proof at all.
    let res = client()
        .post(server.at("/dbsc/register"))
        .header("cookie", device.cookies())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "dbsc_proof_missing"
    );
    // Nothing was bound: the session is served unbound.
    assert_eq!(
        device.forward(&server, false).await,
        (200, Some("unbound".into()))
    );

    // Cross-site: refused by the origin check, whatever the proof.
    let res = client()
        .post(server.at("/dbsc/register"))
        .header("cookie", device.cookies())
        .header("sec-fetch-site", "cross-site")
        .header(
            "secure-session-response",
            response_field(&device.key.registration_proof(&challenge)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // The genuine proof still counts once…
    device.register(&server).await;
    // …and only once: a replay is refused, and a thief's own key cannot
    // re-register the bound session.
    let res = device
        .post_registration(&server, &device.key.registration_proof(&challenge))
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "dbsc_already_bound"
    );

    // A stale challenge: a new sign-in's offer answered after its lifetime.
    let mut late = Device::sign_in(&server).await;
    server.advance(Duration::from_secs(301));
    let jwt = late
        .key
        .registration_proof(late.registration.as_deref().unwrap());
    let res = late.post_registration(&server, &jwt).await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "dbsc_challenge_unknown"
    );
    late.registration = None;
    assert_eq!(
        late.forward(&server, false).await,
        (200, Some("unbound".into()))
    );
}

/// Refresh: without a proof a challenge; replayed, wrong and stale
/// challenges get a new one (never anything but 403 or 200); a lost
/// response is recovered by the next refresh; legacy field names work.
#[tokio::test]
async fn dbsc_refresh_challenges_and_recovers() {
    let mut server = sqlite("required");
    let mut device = Device::sign_in(&server).await;
    device.register(&server).await;

    let res = device.post_refresh(&server, None).await;
    let first = device.challenge_in(&res);
    // A proof for a challenge never issued: a new challenge, not an error.
    let res = device.post_refresh(&server, Some("made-up")).await;
    let second = device.challenge_in(&res);
    // A slightly older challenge (two refreshes raced) still counts.
    let res = device.post_refresh(&server, Some(&first)).await;
    assert_eq!(res.status(), 200);
    // …once: replayed, it is refused with a new challenge.
    let res = device.post_refresh(&server, Some(&first)).await;
    device.challenge_in(&res);
    // A stale one (past its lifetime) is refused too.
    server.advance(Duration::from_secs(301));
    let res = device.post_refresh(&server, Some(&second)).await;
    device.challenge_in(&res);

    // A refresh whose response the browser never saw (network error): the
    // next one starts over and succeeds; no new sign-in.
    server.advance(Duration::from_secs(601));
    let res = device.post_refresh(&server, None).await;
    let lost = device.challenge_in(&res);
    let res = device.post_refresh(&server, Some(&lost)).await;
    assert_eq!(res.status(), 200); // …and its cookie is lost with it.
    assert_eq!(device.page(&server).await.0, 401);
    device.refresh(&server).await;
    assert_eq!(device.page(&server).await.0, 200);

    // The legacy `Sec-Session-*` names, for browsers of the origin trial.
    device.legacy = true;
    server.advance(Duration::from_secs(601));
    device.refresh(&server).await;
    assert_eq!(device.page(&server).await.0, 200);

    // A refresh naming another DBSC session id ends it.
    let mut other = Device {
        session_id: Some("other".into()),
        ..clone_of(&device)
    };
    other.legacy = false;
    let res = other.post_refresh(&server, None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"continue": false})
    );
}

fn clone_of(d: &Device) -> Device {
    Device {
        key: d.key.clone(),
        session: d.session.clone(),
        bound: d.bound.clone(),
        session_id: d.session_id.clone(),
        registration: None,
        legacy: d.legacy,
    }
}

/// Ten concurrent refreshes of one device, each with its own challenge:
/// every one succeeds (challenges are per refresh, single-use), and the
/// device is served with the last cookie it got.
#[tokio::test]
async fn dbsc_concurrent_refreshes() {
    let mut server = sqlite("required");
    let mut device = Device::sign_in(&server).await;
    device.register(&server).await;
    server.advance(Duration::from_secs(601));
    let mut challenges = Vec::new();
    for _ in 0..10 {
        let res = device.post_refresh(&server, None).await;
        challenges.push(device.challenge_in(&res));
    }
    // The same challenge answered twice at once: exactly one succeeds.
    let twice = challenges[0].clone();
    let (a, b) = tokio::join!(
        device.post_refresh(&server, Some(&twice)),
        device.post_refresh(&server, Some(&twice))
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 403]);
    let answers = futures_util::future::join_all(
        challenges[1..]
            .iter()
            .map(|c| device.post_refresh(&server, Some(c))),
    )
    .await;
    let mut last = None;
    for res in answers {
        assert_eq!(res.status(), 200);
        last = bound_set_cookie(res.headers());
    }
    let value = last.unwrap();
    device.bound = Some(
        value
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_owned(),
    );
    assert_eq!(device.page(&server).await.0, 200);
}

/// After sign-out the device session ends (`continue: false`); a signed-out
/// cookie never gets a challenge.
#[tokio::test]
async fn dbsc_sign_out_ends_the_device_session() {
    let server = sqlite("required");
    let mut device = Device::sign_in(&server).await;
    device.register(&server).await;
    // The page's CSRF token, for the sign-out form.
    let res = client()
        .get(server.at("/session"))
        .header("cookie", device.cookies())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let csrf = res.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = client()
        .post(server.at("/logout"))
        .header("cookie", device.cookies())
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
    let res = device.post_refresh(&server, None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"continue": false})
    );
}

/// Additive mode: a bound session's request without its bound cookie is
/// served, logged and counted; `Secure-Session-Skipped` is recorded; the
/// tier still tells a backend which requests proved the device.
#[tokio::test]
async fn dbsc_additive_serves_and_counts() {
    let mut server = sqlite("additive");
    let mut device = Device::sign_in(&server).await;
    device.register(&server).await;
    server.advance(Duration::from_secs(601));
    assert_eq!(device.page(&server).await.0, 200);
    assert_eq!(
        device.forward(&server, false).await,
        (200, Some("unbound".into()))
    );
    // A sensitive location demands a bound request whatever the mode.
    assert_eq!(device.forward(&server, true).await.0, 401);
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
        .header("cookie", device.cookies())
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
    device.refresh(&server).await;
    assert_eq!(
        device.forward(&server, true).await,
        (200, Some("bound".into()))
    );
}

/// `/v1` for backends in other languages: the tier in
/// `/v1/sessions/verify` and `/v1/requests/check`, `require_tier`, and the
/// required-mode refusal.
#[tokio::test]
async fn dbsc_v1_reports_and_enforces_the_tier() {
    let mut server = sqlite("required");
    let key = server.api_key();
    let mut device = Device::sign_in(&server).await;
    device.register(&server).await;
    let verify_url = server.at("/v1/sessions/verify");
    let verify = |body: Value| {
        client()
            .post(&verify_url)
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let bound = device.bound.clone().unwrap();
    let res =
        verify(json!({"token": device.session, "dbsc_cookie": bound, "require_tier": "bound"}))
            .await
            .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["tier"], "bound");
    let res = verify(json!({"token": device.session})).await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.unwrap()["reason"],
        "device_unbound"
    );
    let res = verify(json!({"token": device.session, "require_tier": "gold"}))
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
    let answer: Value = check(device.cookies()).await.unwrap().json().await.unwrap();
    assert_eq!(answer["outcome"], "session");
    assert_eq!(answer["session"]["tier"], "bound");
    server.advance(Duration::from_secs(601));
    let answer: Value = check(device.cookies()).await.unwrap().json().await.unwrap();
    assert_eq!(answer["outcome"], "no_session");
    assert_eq!(answer["reason"], "device_unbound");
    // The session cookie is not cleared: the session lives on, and the
    // device's refresh restores it.
    assert_eq!(answer["set_cookie"], json!([]));
    device.refresh(&server).await;
    let answer: Value = check(device.cookies()).await.unwrap().json().await.unwrap();
    assert_eq!(answer["session"]["tier"], "bound");
}

/// Off (the default): no offer, no endpoints, no tier refusal.
#[tokio::test]
async fn dbsc_off_changes_nothing() {
    let server = Server::start(&[]);
    let device = Device::sign_in(&server).await;
    assert!(device.registration.is_none());
    let res = device.post_registration(&server, "x.y.z").await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        device.forward(&server, false).await,
        (200, Some("unbound".into()))
    );
    let text = reqwest::Client::new()
        .get(server.at("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("tessera_dbsc_events_total"));
}
