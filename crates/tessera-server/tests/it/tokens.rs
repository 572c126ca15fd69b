//! Token mode through real HTTP: token pairs from `/v1/tokens`
//! and `POST /token`, access tokens verified against the served JWKS,
//! refresh rotation, the grace-period retry, the theft scenario end to end,
//! concurrent refreshes, RFC 7009 revocation, RFC 7662 introspection, key
//! rotation with `tessera keys rotate`, forward auth with bearer tokens,
//! and bad input. The refresh, race and theft scenarios run on every store:
//! SQLite, PostgreSQL, MySQL/MariaDB, Redis and Redis Cluster (the last
//! four need the `TESSERA_TEST_*_URL` services and fail without them).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tessera::time::SystemClock;
use tessera_jwt::{PublicKeySet, VerifiedToken, Verifier, VerifierConfig};

use crate::backends::{PgDatabase, required_env, unique};
use crate::common::{
    Server, client, create_session, delete_session, demo_login, get, get_json, get_text,
    list_sessions,
};

/// Past the default 10 s refresh grace period.
const PAST_GRACE: Duration = Duration::from_secs(11);

/// A token pair as the server returns it.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    pub(crate) access: String,
    pub(crate) refresh: String,
    pub(crate) handle: String,
}

impl Pair {
    fn from(body: &Value) -> Self {
        assert_eq!(body["token_type"], "Bearer", "{body}");
        assert_eq!(body["expires_in"], 600, "{body}");
        let refresh = body["refresh_token"].as_str().unwrap().to_owned();
        assert!(refresh.starts_with("tsr_"), "{body}");
        Self {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh,
            handle: body["handle"].as_str().unwrap().to_owned(),
        }
    }
}

/// The server's JWKS, checked for cache headers and private members.
pub(crate) async fn jwks(server: &Server) -> (PublicKeySet, Value) {
    let res = get(server, "/.well-known/jwks.json").await;
    assert_eq!(res.status(), 200);
    let cache = res.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(cache.contains("max-age="), "{cache}");
    let text = res.text().await.unwrap();
    for private in ["\"d\"", "PRIVATE", "\"p\"", "\"q\""] {
        assert!(!text.contains(private), "no private member: {text}");
    }
    (
        PublicKeySet::from_json(&text).unwrap(),
        serde_json::from_str(&text).unwrap(),
    )
}

/// Verifies an access token the way a resource server would: only the
/// public keys from the JWKS, no store.
async fn verify_with_jwks(server: &Server, token: &str) -> VerifiedToken {
    let (keys, _) = jwks(server).await;
    let verifier = Verifier::new(
        VerifierConfig::new("tessera", "tessera")
            .algorithms([tessera_jwt::Algorithm::EdDSA, tessera_jwt::Algorithm::Es256]),
        keys,
        Arc::new(SystemClock),
    );
    verifier.verify(token).unwrap()
}

pub(crate) fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

pub(crate) async fn issue(server: &Server, key: &str, user: &str) -> Pair {
    let res = client()
        .post(server.at("/v1/tokens"))
        .bearer_auth(key)
        .json(&json!({"user_id": user, "user_agent": "it-tests"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("set-cookie").is_none());
    assert_eq!(res.headers()["cache-control"], "no-store");
    Pair::from(&res.json().await.unwrap())
}

/// `POST /v1/tokens/refresh`: (status, body).
async fn refresh(server: &Server, token: &str) -> (u16, Value) {
    let res = client()
        .post(server.at("/v1/tokens/refresh"))
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("set-cookie").is_none());
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

async fn introspect(server: &Server, key: &str, token: &str) -> Value {
    let res = client()
        .post(server.at("/v1/tokens/introspect"))
        .bearer_auth(key)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn revoke(server: &Server, token: &str, hint: Option<&str>) -> u16 {
    let mut form = vec![("token", token)];
    if let Some(hint) = hint {
        form.push(("token_type_hint", hint));
    }
    client()
        .post(server.at("/v1/tokens/revoke"))
        .form(&form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The handles of a user's live sessions.
async fn handles(server: &Server, key: &str, user: &str) -> Vec<String> {
    list_sessions(server, key, user)
        .await
        .iter()
        .map(|s| s["handle"].as_str().unwrap().to_owned())
        .collect()
}

fn refused(status: u16, body: &Value) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

// ---------------------------------------------------------------------
// The per-store scenarios.
// ---------------------------------------------------------------------

/// Rotation, grace retry, theft (both orders), race, revocation and
/// introspection on one running server.
async fn refresh_scenarios(server: &mut Server) {
    let key = server.api_key();
    let user = unique("u");

    // Rotation: a new pair; the presented token dies (after the grace).
    let p0 = issue(server, &key, &user).await;
    let claims = verify_with_jwks(server, &p0.access).await.claims;
    assert_eq!(claims.sub, user);
    assert_eq!(claims.sid.as_str(), p0.handle);
    let (code, body) = refresh(server, &p0.refresh).await;
    assert_eq!(code, 200, "{body}");
    let p1 = Pair::from(&body);
    assert_ne!(p1.refresh, p0.refresh);
    assert_eq!(p1.handle, p0.handle, "same session, same family");
    assert_eq!(
        verify_with_jwks(server, &p1.access)
            .await
            .claims
            .sid
            .as_str(),
        p0.handle
    );

    // A retry within the grace period gets the same child back.
    let (code, body) = refresh(server, &p0.refresh).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["refresh_token"], p1.refresh.as_str(), "same child");
    // The child works and its parent is now dead for good.
    let (code, body) = refresh(server, &p1.refresh).await;
    assert_eq!(code, 200, "{body}");
    let p2 = Pair::from(&body);
    assert_eq!(
        introspect(server, &key, &p1.refresh).await,
        json!({"active": false})
    );
    let live = introspect(server, &key, &p2.refresh).await;
    assert_eq!(live["active"], true, "{live}");
    assert_eq!(live["token_type"], "refresh_token");
    assert_eq!(live["sub"], user.as_str());
    assert_eq!(live["sid"], p0.handle.as_str());
    let live = introspect(server, &key, &p2.access).await;
    assert_eq!(live["active"], true, "{live}");
    assert_eq!(live["token_type"], "access_token");
    assert_eq!(live["sub"], user.as_str());
    assert!(live["exp"].as_i64().unwrap() > live["iat"].as_i64().unwrap());

    // Theft, victim first: the victim refreshes; the thief presents the
    // stolen old token after the grace window. Both are logged out.
    let stolen = issue(server, &key, &user).await;
    let (code, body) = refresh(server, &stolen.refresh).await;
    assert_eq!(code, 200, "{body}");
    let victim = Pair::from(&body);
    server.advance(PAST_GRACE);
    let (code, body) = refresh(server, &stolen.refresh).await;
    refused(code, &body);
    let (code, body) = refresh(server, &victim.refresh).await;
    refused(code, &body);
    assert!(!handles(server, &key, &user).await.contains(&stolen.handle));
    assert_eq!(
        introspect(server, &key, &victim.access).await,
        json!({"active": false}),
        "introspection asks the store: the revoked session's access token is inactive"
    );
    // ...while plain verification needs no store and still accepts it until
    // it expires (documented).
    verify_with_jwks(server, &victim.access).await;
    let logs = server.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("refresh_reuse_detected") && l.contains(&stolen.handle)),
        "audit event logged:\n{logs}"
    );

    // Theft, thief first: the thief refreshes with the stolen token; the
    // victim's later refresh (after the grace) is the reuse. The thief's
    // new refresh token is refused as well.
    let stolen = issue(server, &key, &user).await;
    let (code, body) = refresh(server, &stolen.refresh).await;
    assert_eq!(code, 200, "{body}");
    let thief = Pair::from(&body);
    server.advance(PAST_GRACE);
    let (code, body) = refresh(server, &stolen.refresh).await;
    refused(code, &body);
    let (code, body) = refresh(server, &thief.refresh).await;
    refused(code, &body);
    assert!(!handles(server, &key, &user).await.contains(&stolen.handle));
    // Both detections are counted for alerting.
    let metrics = get_text(server, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "tessera_refresh_reuse_detected_total 2"),
        "{metrics}"
    );

    // Race: N concurrent refreshes with one token leave at most one
    // working lineage: every child returned is the same one, and only it
    // works (exactly once).
    let raced = issue(server, &key, &user).await;
    let results = futures_join(
        (0..8)
            .map(|_| refresh(server, &raced.refresh))
            .collect::<Vec<_>>(),
    )
    .await;
    let children: HashSet<String> = results
        .iter()
        .filter(|(code, _)| *code == 200)
        .map(|(_, body)| body["refresh_token"].as_str().unwrap().to_owned())
        .collect();
    for (code, body) in &results {
        assert!(*code == 200 || *code == 401, "{code} {body}");
    }
    assert!(!children.is_empty(), "one refresh wins: {results:?}");
    server.advance(PAST_GRACE);
    let mut working = 0;
    for child in &children {
        if refresh(server, child).await.0 == 200 {
            working += 1;
        }
    }
    assert!(working <= 1, "at most one working lineage, got {working}");

    // Revocation (RFC 7009): a revoked refresh token is refused at once,
    // and its session is gone.
    let p = issue(server, &key, &user).await;
    assert_eq!(revoke(server, &p.refresh, Some("refresh_token")).await, 200);
    let (code, body) = refresh(server, &p.refresh).await;
    refused(code, &body);
    assert!(!handles(server, &key, &user).await.contains(&p.handle));
    // Revoking the session (any way) kills its refresh tokens at once.
    let p = issue(server, &key, &user).await;
    let res = client()
        .delete(server.at(&format!("/v1/sessions/{}", p.handle)))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (code, body) = refresh(server, &p.refresh).await;
    refused(code, &body);
    // An access token names its session: revoking it revokes the session
    // and the session's refresh tokens (a wrong hint changes nothing).
    let p = issue(server, &key, &user).await;
    assert_eq!(revoke(server, &p.access, Some("refresh_token")).await, 200);
    let (code, body) = refresh(server, &p.refresh).await;
    refused(code, &body);
}

/// `join_all` without the futures crate: spawn on the test runtime so the
/// requests really run at once.
async fn futures_join<F>(futures: Vec<F>) -> Vec<(u16, Value)>
where
    F: std::future::Future<Output = (u16, Value)>,
{
    // Requests borrow the server, so they cannot be spawned; poll them
    // together on this task instead (each is an independent HTTP request
    // on its own connection, so they overlap on the server).
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<(u16, Value)>> = vec![None; pinned.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_theft_and_race_on_sqlite() {
    let mut server = Server::start(&[]);
    refresh_scenarios(&mut server).await;
}

/// A server on the shared store `store`, with its users/keys database (and
/// so its signing keys) in its own directory, where [`Server::api_key`]
/// creates keys.
fn start_on(store: &str, env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("tessera.db").display());
    let mut all = vec![("TESSERA_DATABASE", database.as_str())];
    all.extend_from_slice(env);
    Server::start_on(dir, store, &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_theft_and_race_on_postgresql() {
    let db = PgDatabase::create();
    let mut server = start_on(&db.url, &[]);
    refresh_scenarios(&mut server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_theft_and_race_on_mysql() {
    let db = MySqlDatabase::create();
    let mut server = start_on(&db.url, &[]);
    refresh_scenarios(&mut server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_theft_and_race_on_redis() {
    let url = required_env("TESSERA_TEST_REDIS_URL");
    let prefix = format!("{}:", unique("tessera-tok"));
    let mut server = start_on(&url, &[("TESSERA_STORE_KEY_PREFIX", &prefix)]);
    refresh_scenarios(&mut server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_theft_and_race_on_redis_cluster() {
    let url = required_env("TESSERA_TEST_REDIS_CLUSTER_URL");
    let prefix = format!("{}:", unique("tessera-tok"));
    let mut server = start_on(&url, &[("TESSERA_STORE_KEY_PREFIX", &prefix)]);
    refresh_scenarios(&mut server).await;
}

/// A fresh MySQL/MariaDB database on the server of
/// `TESSERA_TEST_MYSQL_URL` (`mysql://user@host:port/db`), dropped after.
struct MySqlDatabase {
    args: Vec<String>,
    name: String,
    url: String,
}

impl MySqlDatabase {
    fn create() -> Self {
        let admin_url = required_env("TESSERA_TEST_MYSQL_URL");
        let rest = admin_url
            .split_once("://")
            .map(|(_, r)| r)
            .expect("mysql://…");
        let (authority, _) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("root", authority));
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
        let mut args = vec![
            "--no-defaults".to_owned(),
            "--protocol=tcp".to_owned(),
            format!("-h{host}"),
            format!("-P{port}"),
            format!("-u{user}"),
        ];
        if !password.is_empty() {
            args.push(format!("-p{password}"));
        }
        let name = unique("tessera_tok");
        mysql(&args, &format!("CREATE DATABASE {name}"));
        let url = format!("mysql://{userinfo}@{hostport}/{name}");
        Self { args, name, url }
    }
}

impl Drop for MySqlDatabase {
    fn drop(&mut self) {
        let _ = std::process::Command::new("mariadb")
            .args(&self.args)
            .arg("-e")
            .arg(format!("DROP DATABASE IF EXISTS {}", self.name))
            .status();
    }
}

fn mysql(args: &[String], sql: &str) {
    let out = std::process::Command::new("mariadb")
        .args(args)
        .arg("-e")
        .arg(sql)
        .output()
        .expect("the mariadb client (Debian package mariadb-client) must be installed");
    assert!(
        out.status.success(),
        "mariadb {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------
// One store is enough for the rest.
// ---------------------------------------------------------------------

#[tokio::test]
async fn v1_tokens_pair_verifies_against_the_served_jwks() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let pair = issue(&server, &key, "alice").await;
    let verified = verify_with_jwks(&server, &pair.access).await;
    assert_eq!(verified.claims.sub, "alice");
    assert_eq!(verified.claims.sid.as_str(), pair.handle);
    assert_eq!(verified.claims.exp - verified.claims.iat, 600);
    let (_, raw) = jwks(&server).await;
    assert_eq!(raw["keys"][0]["kid"], kid_of(&pair.access).as_str());
    assert_eq!(raw["keys"][0]["alg"], "EdDSA");
    // The session behind it is listed like any other.
    assert!(handles(&server, &key, "alice").await.contains(&pair.handle));

    // No API key: 401 and nothing created.
    let res = client()
        .post(server.at("/v1/tokens"))
        .json(&json!({"user_id": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Bad input: clear 400s, nothing stored.
    for (body, content_type) in [
        ("{\"user_id\": ", "application/json"),
        ("{\"user_id\": \"\"}", "application/json"),
        ("{}", "application/json"),
        ("{\"user_id\": \"alice\", \"extra\": 1}", "application/json"),
    ] {
        let res = client()
            .post(server.at("/v1/tokens"))
            .bearer_auth(&key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{body}");
        let err: Value = res.json().await.unwrap();
        assert!(err["error"].is_string(), "{err}");
    }
    assert_eq!(handles(&server, &key, "alice").await, vec![pair.handle]);
}

#[tokio::test]
async fn token_endpoint_signs_in_with_a_password_and_sets_no_cookie() {
    let server = Server::start(&[
        ("TESSERA_LOGIN_MAX_FAILURES_PER_USER", "3"),
        ("TESSERA_PASSWORD_GRANT", "true"),
    ]);
    let key = server.api_key();
    let password = server.demo_password.clone().unwrap();

    // Form-encoded, as RFC 6749 specifies.
    let res = client()
        .post(server.at("/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "demo"),
            ("password", &password),
            ("unknown_parameter", "ignored"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("set-cookie").is_none(), "no cookie");
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["pragma"], "no-cache");
    let form_pair = Pair::from(&res.json().await.unwrap());
    assert_eq!(
        verify_with_jwks(&server, &form_pair.access)
            .await
            .claims
            .sub,
        "demo"
    );
    // JSON works too, and the refresh grant at the same endpoint.
    let res = client()
        .post(server.at("/token"))
        .json(&json!({"grant_type": "password", "username": "demo", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("set-cookie").is_none());
    let json_pair = Pair::from(&res.json().await.unwrap());
    let res = client()
        .post(server.at("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &json_pair.refresh),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    Pair::from(&res.json().await.unwrap());
    let logs = server.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("login_succeeded") && l.contains("token endpoint")),
        "{logs}"
    );

    // A browser session cookie plays no part: presenting one changes
    // nothing and nothing is set.
    let browser = demo_login(&server).await;
    let before = handles(&server, &key, "demo").await;
    let res = client()
        .post(server.at("/token"))
        .header("cookie", crate::common::cookie_header(&browser.token))
        .form(&[("grant_type", "password"), ("username", "demo")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("set-cookie").is_none());

    // Bad input: clear 4xx in the RFC 6749 §5.2 shape, nothing stored.
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Form<'_>, u16, &str)> = vec![
        (vec![], 400, "invalid_request"),
        (
            vec![("grant_type", "client_credentials")],
            400,
            "unsupported_grant_type",
        ),
        (
            vec![("grant_type", "password"), ("password", "x")],
            400,
            "invalid_request",
        ),
        (
            vec![("grant_type", "refresh_token")],
            400,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("grant_type", "password"),
                ("username", "demo"),
                ("password", "x"),
            ],
            400,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("username", "demo"),
                ("password", "wrong password"),
            ],
            400,
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", "tsr_forged"),
            ],
            401,
            "invalid_grant",
        ),
    ];
    for (form, status, error) in cases {
        let res = client()
            .post(server.at("/token"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{form:?}");
        assert!(res.headers().get("set-cookie").is_none());
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], error, "{form:?}: {body}");
        assert!(body["error_description"].is_string(), "{body}");
        assert!(!body.to_string().contains("wrong password"), "no echo");
    }
    let res = client()
        .post(server.at("/token"))
        .header("content-type", "application/json")
        .body("{\"grant_type\": \"password\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert_eq!(
        handles(&server, &key, "demo").await,
        before,
        "nothing stored"
    );
    assert!(server.logs().contains("login_failed"));

    // The sign-in throttle is the site's: after the limit, 429 even with
    // the right password.
    for _ in 0..3 {
        client()
            .post(server.at("/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", "demo"),
                ("password", "nope"),
            ])
            .send()
            .await
            .unwrap();
    }
    let res = client()
        .post(server.at("/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "demo"),
            ("password", &password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("retry-after").is_some());
    assert_eq!(handles(&server, &key, "demo").await, before);
}

#[tokio::test]
async fn revocation_and_introspection_follow_rfc_7009_and_7662() {
    let server = Server::start(&[]);
    let key = server.api_key();
    // Unknown, malformed or foreign tokens: 200, nothing happens.
    let live = issue(&server, &key, "bob").await;
    for junk in [
        "tsr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "tss_nope",
        "eyJhbGciOiJub25lIn0.e30.",
        "not a token at all",
    ] {
        assert_eq!(revoke(&server, junk, None).await, 200, "{junk}");
        assert_eq!(
            introspect(&server, &key, junk).await,
            json!({"active": false})
        );
    }
    assert_eq!(refresh(&server, &live.refresh).await.0, 200, "untouched");
    // No token: 400; introspection needs an API key.
    let res = client()
        .post(server.at("/v1/tokens/revoke"))
        .form(&[("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    let res = client()
        .post(server.at("/v1/tokens/introspect"))
        .form(&[("token", live.refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // An opaque session token (tss_) can be revoked and introspected too.
    let created: Value = create_session(&server, &key, "bob").await;
    let token = created["token"].as_str().unwrap();
    let active = introspect(&server, &key, token).await;
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["token_type"], "session_token");
    assert_eq!(revoke(&server, token, Some("access_token")).await, 200);
    assert_eq!(
        introspect(&server, &key, token).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn keys_rotate_publishes_both_keys_and_signs_with_the_new_one() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let before = issue(&server, &key, "carol").await;
    let old_kid = kid_of(&before.access);

    let keys_dir = server.dir.path().join("tessera-keys");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&keys_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "keys directory is private");
        let pem = keys_dir.join(format!("{old_kid}.pem"));
        let mode = std::fs::metadata(&pem).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key file is private");
    }

    let (ok, out, err) = server.cli(&["keys", "rotate"], None);
    assert!(ok, "{err}");
    assert!(
        !out.contains("PRIVATE") && !err.contains("PRIVATE"),
        "{out}{err}"
    );
    let (_, raw) = jwks(&server).await;
    let kids: Vec<&str> = raw["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2, "{raw}");
    assert!(kids.contains(&old_kid.as_str()));
    let new_kid = kids.iter().find(|k| **k != old_kid).unwrap().to_string();
    assert!(out.contains(&new_kid), "{out}");

    // Old tokens still verify; new ones carry the new kid; refresh works.
    verify_with_jwks(&server, &before.access).await;
    let after = issue(&server, &key, "carol").await;
    assert_eq!(kid_of(&after.access), new_kid);
    verify_with_jwks(&server, &after.access).await;
    let (code, body) = refresh(&server, &before.refresh).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(kid_of(body["access_token"].as_str().unwrap()), new_kid);

    let (ok, out, err) = server.cli(&["keys", "list"], None);
    assert!(ok, "{err}");
    assert!(out.contains(&old_kid) && out.contains(&new_kid), "{out}");
    assert!(out.contains("active") && out.contains("retired"), "{out}");
    assert!(!out.contains("PRIVATE"), "{out}");
    // Nothing to prune while the old key's tokens may live.
    let (ok, out, err) = server.cli(&["keys", "prune"], None);
    assert!(ok, "{err}");
    assert!(out.contains("pruned 0 key(s)"), "{out}");
    assert_eq!(jwks(&server).await.1["keys"].as_array().unwrap().len(), 2);
    // The server log names keys by id only.
    assert!(!server.logs().contains("PRIVATE KEY"));
}

#[tokio::test]
async fn forward_auth_accepts_bearer_session_and_access_tokens() {
    let server = Server::start(&[]);
    let key = server.api_key();
    let created: Value = create_session(&server, &key, "dave").await;
    let token = created["token"].as_str().unwrap().to_owned();
    let handle = created["handle"].as_str().unwrap().to_owned();
    let forward = |credential: String, cross_site_post: bool| {
        let mut req = client()
            .get(server.at("/v1/auth/verify"))
            .header("authorization", format!("Bearer {credential}"));
        if cross_site_post {
            req = req
                .header("x-forwarded-method", "POST")
                .header("sec-fetch-site", "cross-site")
                .header("origin", "https://evil.example");
        }
        req.send()
    };

    // Opaque session token: accepted, and exempt from the origin check
    // (no ambient authority).
    for cross in [false, true] {
        let res = forward(token.clone(), cross).await.unwrap();
        assert_eq!(res.status(), 200, "cross-site: {cross}");
        assert_eq!(res.headers()["x-tessera-user"], "dave");
        assert_eq!(res.headers()["x-tessera-session"], handle.as_str());
    }
    // Malformed session token: 401.
    let res = forward(format!("{token}x"), false).await.unwrap();
    assert_eq!(res.status(), 401);
    // Two different session tokens (the same rule as the session layer and
    // duplicate cookies): 401 `ambiguous`, never a guess — even though one
    // of them is valid.
    let other: Value = create_session(&server, &key, "mallory").await;
    let other = other["token"].as_str().unwrap().to_owned();
    let res = client()
        .get(server.at("/v1/auth/verify"))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {other}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["reason"], "ambiguous", "{body}");
    // The same token twice is one token.
    let res = client()
        .get(server.at("/v1/auth/verify"))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Access token: accepted without a store call.
    let pair = issue(&server, &key, "erin").await;
    let res = forward(pair.access.clone(), false).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tessera-user"], "erin");
    assert_eq!(res.headers()["x-tessera-session"], pair.handle.as_str());
    // A tampered one is not ours: with no cookie, 401.
    let mut tampered = pair.access.clone();
    tampered.push('A');
    assert_eq!(forward(tampered, false).await.unwrap().status(), 401);

    // Revoked session: the opaque token dies at once.
    let res = delete_session(&server, &key, &handle).await;
    assert_eq!(res.status(), 204);
    assert_eq!(forward(token, false).await.unwrap().status(), 401);
}

#[tokio::test]
async fn openapi_documents_the_token_endpoints() {
    let server = Server::start(&[]);
    let doc: Value = get_json(&server, "/openapi.json").await;
    for path in [
        "/v1/tokens",
        "/token",
        "/v1/tokens/refresh",
        "/v1/tokens/revoke",
        "/v1/tokens/introspect",
        "/.well-known/jwks.json",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_grace_a_refresh_race_leaves_no_working_lineage() {
    let server = Server::start(&[("TESSERA_REFRESH_GRACE", "0s")]);
    let key = server.api_key();
    let pair = issue(&server, &key, "gina").await;

    // Bad input first: clear 400s, and the token is untouched.
    for (body, content_type) in [
        ("{\"refresh_token\": ", "application/json"),
        ("{}", "application/json"),
        ("grant_type=password", "application/x-www-form-urlencoded"),
    ] {
        let res = client()
            .post(server.at("/v1/tokens/refresh"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{body}");
        let err: Value = res.json().await.unwrap();
        assert!(
            err["error"] == "invalid_request" || err["error"] == "unsupported_grant_type",
            "{err}"
        );
    }
    assert_eq!(
        introspect(&server, &key, &pair.refresh).await["active"],
        true
    );

    // Eight refreshes at once with one token and no grace period: at most
    // one wins the rotation; every other presentation is a reuse, which
    // revokes the family — so no child returned keeps working.
    let results = futures_join(
        (0..8)
            .map(|_| refresh(&server, &pair.refresh))
            .collect::<Vec<_>>(),
    )
    .await;
    let children: Vec<String> = results
        .iter()
        .filter(|(code, _)| *code == 200)
        .map(|(_, body)| body["refresh_token"].as_str().unwrap().to_owned())
        .collect();
    assert!(children.len() <= 1, "one rotation at most: {results:?}");
    let mut working = 0;
    for child in &children {
        if refresh(&server, child).await.0 == 200 {
            working += 1;
        }
    }
    let refused_count = results.iter().filter(|(code, _)| *code == 401).count();
    assert_eq!(refused_count + children.len(), 8, "{results:?}");
    // The other presentations were reuses: the whole family is gone, the
    // winner's child included.
    assert_eq!(working, 0, "{results:?}");
    assert!(!handles(&server, &key, "gina").await.contains(&pair.handle));
    assert!(server.logs().contains("refresh_reuse_detected"));
}

#[tokio::test]
async fn instances_sharing_a_key_directory_verify_each_others_tokens_and_rotations() {
    let a = Server::start(&[]);
    // B: same store and database file, so the same default key directory.
    let b = Server::start_on(tempfile::tempdir().unwrap(), &a.store_url(), &[]);
    let key = a.api_key();
    let from_a = issue(&a, &key, "hana").await;
    verify_with_jwks(&b, &from_a.access).await;
    assert_eq!(introspect(&b, &key, &from_a.access).await["active"], true);
    let (code, body) = refresh(&b, &from_a.refresh).await;
    assert_eq!(code, 200, "{body}");

    let (ok, out, err) = a.cli(&["keys", "rotate"], None);
    assert!(ok, "{err}");
    let new_kid = out
        .split_whitespace()
        .nth(3)
        .expect("new signing key KID …")
        .to_owned();
    // Both instances sign with the new key at once and publish both.
    for server in [&a, &b] {
        let pair = issue(server, &key, "hana").await;
        assert_eq!(kid_of(&pair.access), new_kid, "{out}");
        assert_eq!(jwks(server).await.1["keys"].as_array().unwrap().len(), 2);
        verify_with_jwks(server, &from_a.access).await;
    }
}

#[tokio::test]
async fn a_token_signed_with_a_key_rotated_in_elsewhere_verifies_at_once() {
    let a = Server::start(&[]);
    let b = Server::start_on(tempfile::tempdir().unwrap(), &a.store_url(), &[]);
    let key = a.api_key();
    let forward = |server: &Server, access: &str| {
        client()
            .get(server.at("/v1/auth/verify"))
            .bearer_auth(access)
            .send()
    };
    let before = issue(&a, &key, "ivan").await;
    assert_eq!(forward(&b, &before.access).await.unwrap().status(), 200);

    let (ok, _, err) = a.cli(&["keys", "rotate"], None);
    assert!(ok, "{err}");
    let after = issue(&a, &key, "ivan").await;
    assert_ne!(kid_of(&after.access), kid_of(&before.access));
    // B has not signed or served its JWKS since the rotation, and its
    // clock (the test clock file) stands still, so its once-a-second
    // re-check never comes due: only the unknown kid makes it look.
    let res = forward(&b, &after.access).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tessera-user"], "ivan");
    assert_eq!(res.headers()["x-tessera-session"], after.handle.as_str());
    // A kid that is nowhere on disk is still refused.
    let mut header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(after.access.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    header["kid"] = json!("k_unknown");
    let forged = after.access.replacen(
        after.access.split('.').next().unwrap(),
        &URL_SAFE_NO_PAD.encode(header.to_string()),
        1,
    );
    assert_eq!(forward(&b, &forged).await.unwrap().status(), 401);
}

#[tokio::test]
async fn es256_keys_when_configured() {
    let server = Server::start(&[("TESSERA_TOKEN_ALGORITHM", "es256")]);
    let key = server.api_key();
    let pair = issue(&server, &key, "ivan").await;
    let (_, raw) = jwks(&server).await;
    assert_eq!(raw["keys"][0]["alg"], "ES256", "{raw}");
    assert_eq!(raw["keys"][0]["kty"], "EC", "{raw}");
    assert_eq!(
        verify_with_jwks(&server, &pair.access).await.algorithm,
        tessera_jwt::Algorithm::Es256
    );
}

#[test]
fn a_key_directory_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("tessera.db").display());
    let (ok, out, err) = crate::common::run_cli(&store, &["keys", "list"], None);
    assert!(ok, "{err}");
    assert!(out.contains("active"), "{out}");
    let keys = dir.path().join("tessera-keys");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (ok, out, err) = crate::common::run_cli(&store, &["keys", "list"], None);
    assert!(!ok, "{out}");
    assert!(err.contains("signing keys"), "{err}");
    assert!(!out.contains("active"), "{out}");
}

/// An access token never outlives its session: with a 5-minute absolute
/// timeout and the default 10-minute access lifetime, `exp` is the
/// session's absolute deadline and `expires_in` says so.
#[tokio::test]
async fn access_tokens_end_with_their_sessions_absolute_deadline() {
    let server = Server::start(&[
        ("TESSERA_IDLE_TIMEOUT", "2m"),
        ("TESSERA_ABSOLUTE_TIMEOUT", "5m"),
    ]);
    let key = server.api_key();
    let res = client()
        .post(server.at("/v1/tokens"))
        .bearer_auth(&key)
        .json(&json!({"user_id": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    let verified = verify_with_jwks(&server, body["access_token"].as_str().unwrap()).await;
    let lifetime = verified.claims.exp - verified.claims.iat;
    // 300 s, or 299 when the session began late in a second (`exp` is
    // rounded down to the deadline's second).
    assert!((299..=300).contains(&lifetime), "{lifetime}");
    assert_eq!(body["expires_in"], lifetime, "{body}");
}
