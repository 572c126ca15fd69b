//! DBSC through the layer: the registration offer on sign-in, the two
//! endpoints mounted with `tessera_axum::dbsc::routes`, the required-mode
//! gate and the tier extractors, over real HTTP with the simulator key.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tessera::SessionManager;
use tessera::dbsc::{Dbsc, DbscConfig, DbscMode, MemoryDbscStore, Tier};
use tessera::store::MemoryStore;
use tessera::testkit::dbsc_sim::{DeviceKey, challenge_of, response_field};
use tessera::time::{ManualClock, Timestamp};
use tessera_axum::{
    AuthUser, BoundSession, DeviceTier, Session, SessionConfig, SessionLayer, SessionRejection,
};

use crate::common::{START, client, policy, serve, session_token};

struct App {
    base: String,
    clock: ManualClock,
}

async fn start(mode: DbscMode) -> App {
    let clock = ManualClock::new(Timestamp::from_millis(START));
    let manager = SessionManager::builder(MemoryStore::new())
        .policy(policy())
        .clock(clock.clone())
        .build()
        .unwrap();
    let dbsc = Dbsc::new(
        DbscConfig {
            mode,
            ..DbscConfig::default()
        },
        Arc::new(MemoryDbscStore::new()),
    );
    let app = Router::new()
        .route(
            "/login/{user}",
            post(
                |session: Session, axum::extract::Path(user): axum::extract::Path<String>| async move {
                    session.login(&user).await?;
                    Ok::<_, SessionRejection>("signed in")
                },
            ),
        )
        .route("/me", get(|user: AuthUser| async move { user.user_id }))
        .route(
            "/tier",
            get(|DeviceTier(tier): DeviceTier| async move { tier.as_str() }),
        )
        .route("/payout", get(|s: BoundSession| async move { s.user_id }))
        .merge(tessera_axum::dbsc::routes(&dbsc))
        .layer(SessionLayer::with_config(
            manager,
            SessionConfig::default().with_dbsc(dbsc),
        ));
    App {
        base: serve(app).await,
        clock,
    }
}

/// `__Host-session=…; __Host-tessera-dbsc=…`.
fn cookies(session: &str, bound: Option<&str>) -> String {
    match bound {
        Some(b) => format!("__Host-session={session}; __Host-tessera-dbsc={b}"),
        None => format!("__Host-session={session}"),
    }
}

async fn get_status(app: &App, path: &str, cookie: &str) -> (u16, String) {
    let r = client()
        .get(format!("{}{path}", app.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn dbsc_post(
    app: &App,
    path: &str,
    cookie: &str,
    fields: &[(&str, String)],
) -> reqwest::Response {
    let mut rb = client()
        .post(format!("{}{path}", app.base))
        .header("cookie", cookie)
        .header("sec-fetch-site", "same-origin")
        .header("origin", app.base.clone());
    for (name, value) in fields {
        rb = rb.header(*name, value);
    }
    rb.send().await.unwrap()
}

/// Signs `user` in: the session token and the registration offer, which
/// comes under both field names with the same value.
async fn sign_in(app: &App, user: &str) -> (String, String) {
    let r = client()
        .post(format!("{}/login/{user}", app.base))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    let offer = r.headers()["secure-session-registration"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        r.headers()["sec-session-registration"].to_str().unwrap(),
        offer
    );
    let session = session_token(r.headers(), "__Host-session").unwrap();
    (session, offer)
}

#[tokio::test]
async fn layer_binds_refreshes_and_gates_in_required_mode() {
    let app = start(DbscMode::Required).await;
    let (session, offer) = sign_in(&app, "alice").await;
    assert_eq!(
        get_status(&app, "/tier", &cookies(&session, None)).await,
        (200, "unbound".into())
    );
    // Not bound yet: the sensitive route refuses.
    let (status, body) = get_status(&app, "/payout", &cookies(&session, None)).await;
    assert_eq!(status, 401);
    assert!(body.contains("device_unbound"), "{body}");
    // App routes keep their CSRF check: only the DBSC endpoints are exempt.
    let r = dbsc_post(&app, "/login/alice", &cookies(&session, None), &[]).await;
    assert_eq!(r.status(), 403);

    // Registration needs no CSRF token (its proof authenticates it).
    let key = DeviceKey::generate();
    let proof = key.registration_proof(&challenge_of(&offer).unwrap());
    let r = dbsc_post(
        &app,
        "/dbsc/register",
        &cookies(&session, None),
        &[("secure-session-response", response_field(&proof))],
    )
    .await;
    assert_eq!(r.status(), 200);
    let bound = session_token(r.headers(), "__Host-tessera-dbsc").unwrap();
    let config: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let id = config["session_identifier"].as_str().unwrap().to_owned();
    let both = cookies(&session, Some(&bound));
    assert_eq!(
        get_status(&app, "/tier", &both).await,
        (200, Tier::Bound.as_str().into())
    );
    assert_eq!(get_status(&app, "/me", &both).await, (200, "alice".into()));
    assert_eq!(
        get_status(&app, "/payout", &both).await,
        (200, "alice".into())
    );

    // Without the bound cookie a bound session is not authenticated.
    let (status, body) = get_status(&app, "/me", &cookies(&session, None)).await;
    assert_eq!(status, 401);
    assert!(body.contains("device_unbound"), "{body}");

    // Past its lifetime the bound cookie is dead; refresh with the key.
    app.clock.advance(Duration::from_secs(601));
    assert_eq!(get_status(&app, "/me", &both).await.0, 401);
    let id_field = format!("\"{id}\"");
    let r = dbsc_post(
        &app,
        "/dbsc/refresh",
        &both,
        &[("sec-secure-session-id", id_field.clone())],
    )
    .await;
    assert_eq!(r.status(), 403);
    let challenge =
        challenge_of(r.headers()["secure-session-challenge"].to_str().unwrap()).unwrap();
    let r = dbsc_post(
        &app,
        "/dbsc/refresh",
        &both,
        &[
            ("sec-secure-session-id", id_field),
            (
                "secure-session-response",
                response_field(&key.refresh_proof(&challenge)),
            ),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let fresh = session_token(r.headers(), "__Host-tessera-dbsc").unwrap();
    assert_eq!(
        get_status(&app, "/me", &cookies(&session, Some(&fresh))).await,
        (200, "alice".into())
    );

    // Cross-site, the endpoints are refused by the origin check.
    let r = client()
        .post(format!("{}/dbsc/refresh", app.base))
        .header("cookie", cookies(&session, Some(&fresh)))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn layer_additive_serves_a_bound_session_without_its_cookie() {
    let app = start(DbscMode::Additive).await;
    let (session, offer) = sign_in(&app, "bob").await;
    let key = DeviceKey::generate();
    let proof = key.registration_proof(&challenge_of(&offer).unwrap());
    let r = dbsc_post(
        &app,
        "/dbsc/register",
        &cookies(&session, None),
        &[("secure-session-response", response_field(&proof))],
    )
    .await;
    assert_eq!(r.status(), 200);
    // Served, but unbound: `BoundSession` still refuses.
    assert_eq!(
        get_status(&app, "/me", &cookies(&session, None)).await,
        (200, "bob".into())
    );
    assert_eq!(
        get_status(&app, "/tier", &cookies(&session, None)).await,
        (200, "unbound".into())
    );
    assert_eq!(
        get_status(&app, "/payout", &cookies(&session, None))
            .await
            .0,
        401
    );
}
