//! The per-user kill switch over real HTTP (ASVS 5.0 V7.4.3): a password
//! change racing concurrent sign-ins, and `/v1` sign-ins that carry the
//! time their credential check began (`checked_at`).
//!
//! The race needs real time (which sign-in read the old password hash is
//! decided by the order of real events), so those servers run on the real
//! clock; the `/v1` cases use the frozen test clock, which makes the order
//! exact.

use std::time::Duration;

use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use tokio::task::JoinSet;

use crate::common::{
    Server, client, cookie_header, create_session, get_text, list_sessions, login, session_cookie,
    status,
};

/// Sign-ins racing each password change, and rounds (password changes).
const SIGN_INS: usize = 24;
const ROUNDS: usize = 6;

/// What one racing sign-in got.
enum SignedIn {
    /// A session cookie from `POST /login`.
    Cookie(String),
    /// A refresh token from `POST /token` (`grant_type=password`).
    Refresh(String),
    /// Refused (the password had already changed), or throttled.
    No,
}

fn racing_server(store: Option<&str>, env: &[(&str, &str)]) -> Server {
    let mut all = vec![
        ("TESSERA_PASSWORD_GRANT", "true"),
        // Sign-ins after the change fail; they must not lock the user out
        // of the next round.
        ("TESSERA_LOGIN_MAX_FAILURES_PER_USER", "100000"),
        ("TESSERA_LOGIN_MAX_FAILURES_PER_IP", "100000"),
        // Room for every racing sign-in and the change at once (8 hashing,
        // 32 waiting), so none is turned away with 503.
        ("TESSERA_PASSWORD_HASH_CONCURRENCY", "8"),
    ];
    all.extend_from_slice(env);
    let mut server = match store {
        Some(url) => {
            // The users (and the demo user) in a fresh database of its own.
            let dir = tempfile::tempdir().unwrap();
            let users = format!("sqlite://{}", dir.path().join("users.db").display());
            all.push(("TESSERA_DATABASE", &users));
            Server::start_on(dir, url, &all)
        }
        None => Server::start(&all),
    };
    server.use_real_clock();
    server
}

async fn sign_in(url: String, password: String, delay: Duration, grant: bool) -> SignedIn {
    tokio::time::sleep(delay).await;
    if grant {
        let res = client()
            .post(format!("{url}/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", "demo"),
                ("password", &password),
            ])
            .send()
            .await
            .unwrap();
        if res.status() != 200 {
            return SignedIn::No;
        }
        let body: Value = res.json().await.unwrap();
        return SignedIn::Refresh(body["refresh_token"].as_str().unwrap().to_owned());
    }
    let res = client()
        .post(format!("{url}/login"))
        .json(&json!({"username": "demo", "password": password}))
        .send()
        .await
        .unwrap();
    if res.status() != 200 {
        return SignedIn::No;
    }
    SignedIn::Cookie(session_cookie(res.headers()).expect("a sign-in sets a cookie"))
}

/// Each round: one signed-in session changes the password while sign-ins
/// with the old password (sign-in form and password grant) run at once,
/// spread over the change. Whatever the interleaving, none of the
/// sessions those sign-ins got may work afterwards: one that finished
/// before the change is revoked by it, and one whose password check read
/// the old hash while the change committed counts as created before the
/// user's not-before, so it is refused even though it was stored later.
/// The session that changed the password lives on under a new token.
async fn a_password_change_leaves_no_racing_sign_in_alive(server: &Server) {
    let base = server.url.clone();
    let mut password = server.demo_password.clone().unwrap();
    let mut got_in = 0;
    for round in 0..ROUNDS {
        let changer = login(server, "demo", &password).await;
        let new_password = format!("changed-password-{round}-of-the-race");
        let mut racing = JoinSet::new();
        for i in 0..SIGN_INS {
            // Arriving before, during and after the change's own two
            // password hashes, one in three through the password grant.
            let delay = Duration::from_millis(u64::try_from(i).unwrap() * 25);
            racing.spawn(sign_in(base.clone(), password.clone(), delay, i % 3 == 2));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let res = client()
            .post(server.at("/account/password"))
            .header("cookie", cookie_header(&changer.token))
            .header("x-csrf-token", &changer.csrf)
            .json(&json!({"current_password": password, "new_password": new_password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "round {round}");
        let kept = session_cookie(res.headers()).expect("the changer is re-issued");
        let results = racing.join_all().await;

        for result in results {
            match result {
                SignedIn::Cookie(token) => {
                    got_in += 1;
                    let (code, body) = status(server, &token).await;
                    assert_eq!(
                        (code, body["reason"].as_str(), body["revoked_by"].as_str()),
                        (401, Some("revoked"), Some("password_changed")),
                        "round {round}: a sign-in with the old password survived: {body}"
                    );
                }
                SignedIn::Refresh(refresh) => {
                    got_in += 1;
                    let res = client()
                        .post(server.at("/v1/tokens/refresh"))
                        .json(&json!({"refresh_token": refresh}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        res.status(),
                        401,
                        "round {round}: a password grant with the old password survived"
                    );
                }
                SignedIn::No => {}
            }
        }
        assert_eq!(status(server, &kept).await.0, 200, "round {round}");
        assert_eq!(
            status(server, &changer.token).await.0,
            401,
            "the changer's old token"
        );
        password = new_password;
    }
    // The test checks something only if some sign-ins got in first.
    assert!(got_in > 0, "no racing sign-in succeeded");
    // The new password works for a later sign-in.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let fresh = login(server, "demo", &password).await;
    assert_eq!(status(server, &fresh.token).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_password_change_racing_sign_ins_leaves_none_alive_on_sqlite() {
    let server = racing_server(None, &[]);
    a_password_change_leaves_no_racing_sign_in_alive(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_password_change_racing_sign_ins_leaves_none_alive_on_redis() {
    let url = crate::backends::required_env("TESSERA_TEST_REDIS_URL");
    let prefix = format!("{}:", crate::backends::unique("tessera-pwrace"));
    let server = racing_server(Some(&url), &[("TESSERA_STORE_KEY_PREFIX", &prefix)]);
    a_password_change_leaves_no_racing_sign_in_alive(&server).await;
}

/// A revoked browser is sent to the sign-in page, which says in words that
/// the password was changed.
#[tokio::test]
async fn a_session_ended_by_a_password_change_is_told_so_in_words() {
    let server = Server::start(&[]);
    let password = server.demo_password.clone().unwrap();
    let here = login(&server, "demo", &password).await;
    let phone = login(&server, "demo", &password).await;
    let res = client()
        .post(server.at("/account/password"))
        .header("cookie", cookie_header(&here.token))
        .header("x-csrf-token", &here.csrf)
        .json(&json!({"current_password": password, "new_password": "a-new-long-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client()
        .get(server.at("/"))
        .header("cookie", cookie_header(&phone.token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/login?reason=revoked&by=password_changed");
    let page = get_text(&server, &location).await;
    assert!(
        page.contains("You were signed out because your password was changed."),
        "{page}"
    );
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

async fn post(server: &Server, key: &str, path: &str, body: Value) -> (u16, Value) {
    let res = client()
        .post(server.at(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = res.status().as_u16();
    (code, res.json().await.unwrap_or(Value::Null))
}

async fn verify(server: &Server, key: &str, token: &str) -> (u16, Value) {
    post(server, key, "/v1/sessions/verify", json!({"token": token})).await
}

async fn revoke_user(server: &Server, key: &str, user: &str, query: &str) -> (u16, Value) {
    let res = client()
        .delete(server.at(&format!("/v1/users/{user}/sessions{query}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let code = res.status().as_u16();
    (code, res.json().await.unwrap_or(Value::Null))
}

/// An app that checks passwords itself: it reads the time, checks the
/// password, and signs the user in through `/v1` with that `checked_at`;
/// its password change calls `DELETE /v1/users/{id}/sessions?reason=
/// password_changed`. A sign-in that read the old password and arrives
/// after that call is refused (`revoked`, `password_changed`) on all three
/// `/v1` sign-in routes; one without `checked_at`, or checked after the
/// change, works. Bad input is a 400 and changes nothing.
#[tokio::test]
async fn v1_sign_ins_checked_before_a_password_change_are_refused() {
    let mut server = Server::start(&[]);
    let key = server.api_key();
    let earlier = create_session(&server, &key, "olga").await;
    let checked = rfc3339(server.clock_ms);

    // Bad input first: nothing is created, nothing revoked.
    for bad in [
        json!("yesterday"),
        json!(rfc3339(server.clock_ms - 3_600_000)),
        json!(rfc3339(server.clock_ms + 600_000)),
        json!(12),
    ] {
        let (code, body) = post(
            &server,
            &key,
            "/v1/sessions",
            json!({"user_id": "olga", "checked_at": bad}),
        )
        .await;
        assert_eq!(code, 400, "{bad}: {body}");
        if bad.is_string() {
            assert_eq!(body["error"], "invalid_checked_at", "{body}");
        }
    }
    for query in [
        "?reason=everyone",
        "?reson=disabled",
        "?reason=admin&reason=disabled",
    ] {
        let (code, body) = revoke_user(&server, &key, "olga", query).await;
        assert_eq!(
            (code, body["error"].as_str()),
            (400, Some("invalid_reason")),
            "{query}"
        );
    }
    assert_eq!(list_sessions(&server, &key, "olga").await.len(), 1);
    let earlier_token = earlier["token"].as_str().unwrap();
    assert_eq!(verify(&server, &key, earlier_token).await.0, 200);

    // The app's password change, after the sign-ins below read the clock.
    let (code, body) = revoke_user(&server, &key, "olga", "?reason=password_changed").await;
    assert_eq!((code, body["revoked"].as_u64()), (200, Some(1)), "{body}");
    let (code, body) = verify(&server, &key, earlier_token).await;
    assert_eq!(
        (code, body["revoked_by"].as_str()),
        (401, Some("password_changed"))
    );

    // Three doors, each with the stale check: created, and refused at once.
    let (code, created) = post(
        &server,
        &key,
        "/v1/sessions",
        json!({"user_id": "olga", "checked_at": checked}),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let (code, login) = post(
        &server,
        &key,
        "/v1/requests/login",
        json!({"user_id": "olga", "checked_at": checked}),
    )
    .await;
    assert_eq!(code, 200, "{login}");
    let (code, pair) = post(
        &server,
        &key,
        "/v1/tokens",
        json!({"user_id": "olga", "checked_at": checked}),
    )
    .await;
    assert_eq!(code, 201, "{pair}");
    for token in [&created["token"], &login["token"]] {
        let (code, body) = verify(&server, &key, token.as_str().unwrap()).await;
        assert_eq!(
            (code, body["reason"].as_str(), body["revoked_by"].as_str()),
            (401, Some("revoked"), Some("password_changed")),
            "{body}"
        );
    }
    let (code, body) = post(
        &server,
        &key,
        "/v1/tokens/refresh",
        json!({"refresh_token": pair["refresh_token"]}),
    )
    .await;
    assert_eq!(code, 401, "{body}");

    // A check that began after the change, or no `checked_at`: alive.
    server.advance(Duration::from_millis(20));
    let (code, fresh) = post(
        &server,
        &key,
        "/v1/sessions",
        json!({"user_id": "olga", "checked_at": rfc3339(server.clock_ms)}),
    )
    .await;
    assert_eq!(code, 201);
    let (code, plain) = post(&server, &key, "/v1/sessions", json!({"user_id": "olga"})).await;
    assert_eq!(code, 201);
    for token in [&fresh["token"], &plain["token"]] {
        assert_eq!(verify(&server, &key, token.as_str().unwrap()).await.0, 200);
    }

    // Disable: the cause is reported as given.
    server.advance(Duration::from_millis(20));
    let (code, body) = revoke_user(&server, &key, "olga", "?reason=disabled").await;
    // Every stored session of the user: the three refused stale sign-ins
    // (the token grant's too) and the two live ones.
    assert_eq!((code, body["revoked"].as_u64()), (200, Some(5)), "{body}");
    let (code, body) = verify(&server, &key, plain["token"].as_str().unwrap()).await;
    assert_eq!((code, body["revoked_by"].as_str()), (401, Some("disabled")));
}
