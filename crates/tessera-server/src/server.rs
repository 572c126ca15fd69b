//! Building the application and running `tessera serve`.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tessera::SessionManager;
use tessera::cookie::CookieConfig;
use tessera::csrf::OriginCheck;

use crate::admission::HashAdmission;
use crate::api_keys::ApiKeys;
use crate::clock::ServerClock;
use crate::config::Config;
use crate::error::ApiError;
use crate::keys::SigningKeys;
use crate::ratelimit::LoginLimiter;
use crate::state::AppState;
use crate::store::{StoreKind, open_session_store};
use crate::users::Users;
use crate::{api, db, forward_auth, openapi, ops, site, tokens};

pub use crate::server_error::ServerError;

/// Opens databases and builds the shared state.
///
/// # Errors
///
/// [`ServerError`] if a database or the store cannot be opened.
pub async fn build_state(
    config: Config,
    metrics: Option<PrometheusHandle>,
) -> Result<AppState, ServerError> {
    let pool = db::open(
        &config.database_url(),
        config.store_pool_size,
        config.store_timeout,
    )
    .await?;
    // One backend serves sessions and refresh-token families (token mode).
    let store = open_session_store(&config).await?;
    let manager = SessionManager::builder_from_arc(store.store())
        .refresh_store(store.refresh_store())
        .policy(config.policy())
        .clock(ServerClock::from_env())
        .build()?;
    let signing = SigningKeys::open(&config, Arc::new(ServerClock::from_env()), &pool).await?;
    let admission = HashAdmission::new(
        config
            .password_hash_concurrency
            .unwrap_or_else(crate::admission::default_width),
    );
    let users = Users::with_admission(pool.clone(), admission).await?;
    let activity = crate::activity::Activity::new(pool.clone());
    let mut keys = ApiKeys::new(pool.clone());
    if let Some(cache) = store.cache() {
        // Found keys are remembered while the cache's channel vouches for
        // them, and revocations are published on it (src/api_keys.rs).
        keys = keys.remembering(cache.clone(), config.cache_max_staleness);
    }
    let cookie = CookieConfig::default().insecure_http(config.insecure_http);
    let origin = OriginCheck::new(&config.trusted_origins);
    let limiter = open_limiter(&config, &pool).await?;
    let dbsc = crate::dbsc::engine(&config, store.dbsc_store());
    Ok(AppState {
        config: Arc::new(config),
        manager,
        users,
        activity,
        keys,
        cookie,
        origin,
        limiter,
        signing,
        metrics,
        cache: store.cache().cloned(),
        dbsc,
        store,
    })
}

/// The sign-in limiter, its counters where every instance sees them: in
/// Redis (Cluster) with a Redis store, in the database with a PostgreSQL or
/// MySQL store (the server database, which is the store's own unless
/// `database` says otherwise), else in this process.
async fn open_limiter(config: &Config, db: &db::Db) -> Result<LoginLimiter, ServerError> {
    let (per_user, per_ip, window) = (
        config.login_max_failures_per_user,
        config.login_max_failures_per_ip,
        config.login_failure_window,
    );
    let limiter = match StoreKind::of(&config.store) {
        Some(StoreKind::Redis | StoreKind::RedisCluster) => {
            let store = tessera_redis::RedisStore::connect(
                &config.store,
                crate::store::redis_options(config),
            )
            .await
            .map_err(|source| crate::store::StoreOpenError::Store {
                url: crate::store_url::redact(&config.store),
                source,
            })?;
            LoginLimiter::in_redis(per_user, per_ip, window, store)
        }
        Some(StoreKind::Postgres | StoreKind::MySql) if !matches!(db, db::Db::Sqlite(_)) => {
            LoginLimiter::in_database(per_user, per_ip, window, db.clone())
        }
        _ => LoginLimiter::local(per_user, per_ip, window, config.login_limiter_memory),
    };
    tracing::info!(counters = limiter.backend(), "sign-in limiter ready");
    Ok(limiter)
}

async fn not_found() -> Response {
    ApiError::not_found()
        .message("no such route")
        .into_response()
}

/// The complete router.
pub fn app(state: AppState) -> Router {
    let body_limit = state.config.body_limit;
    Router::new()
        .merge(site::router(state.clone()))
        .merge(api::router(state.clone()))
        .merge(tokens::public_router())
        .merge(site::assets())
        .route("/v1/auth/verify", get(forward_auth::verify))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(crate::render::security_headers))
        // After the security headers: they would replace its cache policy.
        .merge(tokens::jwks_router())
        .with_state(state)
}

/// Creates the `demo` user with a random password when there are no users
/// at all. Returns the password to print once.
///
/// # Errors
///
/// Database and hashing errors.
pub async fn ensure_demo_user(users: &Users) -> Result<Option<String>, ServerError> {
    if users.count().await? > 0 {
        return Ok(None);
    }
    let password = crate::users::random_password()?;
    match users.add("demo", &password).await {
        Ok(()) => Ok(Some(password)),
        // Another instance created it first.
        Err(crate::users::UserError::Exists) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Runs `tessera serve` until Ctrl-C or SIGTERM.
///
/// # Errors
///
/// [`ServerError`] if start-up fails.
pub async fn serve(config: Config, metrics: Option<PrometheusHandle>) -> Result<(), ServerError> {
    let listen = config.listen;
    let state = build_state(config, metrics).await?;
    // Created 0600 if new; an older database open to others is reported.
    let database = state.config.database_url();
    crate::files::warn_if_exposed(&database);
    if state.config.store != database {
        crate::files::warn_if_exposed(&state.config.store);
    }
    // The session layer warns about an insecure cookie when it is built.
    if !state.config.insecure_http {
        tracing::info!(
            "the session cookie is Secure: browsers only send it over HTTPS (or to localhost); \
             put tessera behind TLS, or use --insecure-http for local development"
        );
    }
    if state.config.password_grant {
        tracing::warn!(
            "password_grant is on: POST /token accepts grant_type=password, which RFC 9700 \
             §2.4 says MUST NOT be used (the client sees the user's password); prefer \
             signing in on the site and issuing tokens from your backend (POST /v1/tokens)"
        );
    }
    tracing::info!(
        slots = state.users.admission().width(),
        "password hashing admitted {} at a time",
        state.users.admission().width()
    );
    let demo_password = if state.config.demo_user {
        ensure_demo_user(&state.users).await?
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let url = state.config.display_url(bound);
    if let Some(password) = demo_password {
        show_demo_password(&state.config, &password, &url)?;
    }
    let metrics_server = match state.config.metrics_listen {
        Some(address) => Some(start_metrics_listener(&state, address).await?),
        None => {
            if state.config.metrics_token().is_none() {
                tracing::info!(
                    "metrics are off: set metrics_token (bearer token for GET /metrics) or \
                     metrics_listen (a private address) to serve them"
                );
            }
            None
        }
    };
    // Printed last, so scripts can wait for it.
    println!("tessera listening on http://{bound}");

    let sweeper = start_sweeper(&state);
    let dbsc_sweeper = start_dbsc_sweeper(&state);
    // Not axum::serve: it bounds neither the request head nor the body.
    let limits = crate::listen::Limits::from_config(&state.config);
    let cache = state.cache.clone();
    let result = crate::listen::serve(listener, app(state), limits, shutdown_signal()).await;
    if let Some(cache) = cache {
        // Data writes publish their invalidation after answering; send the
        // ones still in flight before exiting, so other instances need not
        // wait out cache_max_staleness for them.
        if tokio::time::timeout(PUBLISH_GRACE, cache.wait_published())
            .await
            .is_err()
        {
            tracing::warn!(
                "cache invalidations still unsent at exit: other instances see those \
                 writes within cache_max_staleness"
            );
        }
    }
    sweeper.stop();
    if let Some(task) = dbsc_sweeper {
        task.abort();
    }
    if let Some(task) = metrics_server {
        task.abort();
    }
    result.map_err(ServerError::Io)
}

/// The longest wait at shutdown for cache invalidations still being sent.
const PUBLISH_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Hands the first-start demo password to the person starting the server,
/// never to log storage: on a terminal it is printed; otherwise (systemd,
/// containers, where standard output is the log) it is written once to a
/// new 0600 file whose path is printed and logged.
///
/// # Errors
///
/// The I/O error of writing the file.
fn show_demo_password(config: &Config, password: &str, url: &str) -> Result<(), ServerError> {
    use std::io::{IsTerminal as _, Write as _};
    if std::io::stdout().is_terminal() {
        println!("created user \"demo\" with password {password}");
        println!("open {url} and sign in (this password is shown only once)");
        return Ok(());
    }
    let path = config.demo_password_path();
    // A leftover from an earlier database is replaced, never appended to,
    // and the new file is created 0600 whatever the old one's mode was.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let mut file = crate::files::create_private_file(&path)?;
    writeln!(file, "{password}")?;
    tracing::warn!(
        file = %path.display(),
        "created user \"demo\"; its password is in this file (mode 0600): sign in at {url}, \
         change the password, then delete the file"
    );
    println!(
        "created user \"demo\"; password written to {}",
        path.display()
    );
    Ok(())
}

/// Binds `metrics_listen` and serves `GET /metrics` there (only that
/// route), with the same connection limits as the main listener. Prints
/// the address before the main listener's line.
///
/// # Errors
///
/// The I/O error of binding.
async fn start_metrics_listener(
    state: &AppState,
    address: std::net::SocketAddr,
) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let router = Router::new()
        .route("/metrics", get(ops::metrics_listener))
        .fallback(not_found)
        .with_state(state.clone());
    let limits = crate::listen::Limits::from_config(&state.config);
    println!("tessera metrics on http://{bound}/metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = crate::listen::serve(listener, router, limits, shutdown_signal()).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    }))
}

/// Rows one sweep statement deletes on the SQL stores: the batch size
/// measured with [`tessera_sql::DEFAULT_PACE`] (docs/performance.md:
/// 100,000 expired rows in about a minute, read p99 within 1.2× of idle).
pub const SWEEP_BATCH: usize = 100;

/// Batches one sweep of a SQL store runs at most: a million rows. A larger
/// backlog is worked off by the next sweeps; the cap only keeps a store
/// that keeps answering full batches from holding one sweep forever.
pub const SWEEP_MAX_BATCHES: u32 = 10_000;

/// Starts the background purge of expired sessions: a sweep at once, then
/// one every `sweep_interval`. Errors are logged and retried on the next
/// tick: a failed sweep costs space, not safety (expired records are
/// refused at every use anyway).
///
/// - SQL stores keep expired rows until deleted, and a backlog can be large
///   (an outage, a burst of sign-ins expiring together): each sweep works
///   the whole backlog off in [`SWEEP_BATCH`]-row statements, resting
///   [`tessera_sql::DEFAULT_PACE`] times as long as each batch took, so
///   requests keep most of the store's time.
/// - Redis expires records by itself (its purge is a no-op) and the memory
///   store is one process: one purge of up to 1,000 records per interval.
fn start_sweeper(state: &AppState) -> tessera_sql::Sweeper {
    let interval = state.config.sweep_interval;
    let config = match StoreKind::of(&state.config.store) {
        Some(StoreKind::Sqlite | StoreKind::Postgres | StoreKind::MySql) => {
            tessera_sql::SweeperConfig::new(interval, SWEEP_BATCH)
                .with_pace(tessera_sql::DEFAULT_PACE)
                .with_max_batches(SWEEP_MAX_BATCHES)
        }
        _ => tessera_sql::SweeperConfig::new(interval, 1000)
            .with_pace(0)
            .with_max_batches(1),
    };
    // The manager's store (metered) and the same clock as the manager.
    tessera_sql::Sweeper::spawn(
        state.manager.store().clone(),
        Arc::new(ServerClock::from_env()),
        config,
    )
}

/// With DBSC on, deletes expired bindings, challenges and bound cookies
/// every `sweep_interval` (SQL and memory stores; Redis keys expire by
/// themselves). Expired rows are refused at every use anyway: a failed
/// sweep costs space, not safety.
fn start_dbsc_sweeper(state: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    state.dbsc.as_ref()?;
    let (store, manager) = (state.store.clone(), state.manager.clone());
    let mut tick = tokio::time::interval(state.config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Some(tokio::spawn(async move {
        loop {
            tick.tick().await;
            match store.purge_expired_dbsc(manager.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(purged = n, "expired DBSC rows deleted"),
                Err(e) => tracing::warn!(error = %e, "DBSC sweep failed; retrying next interval"),
            }
        }
    }))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
