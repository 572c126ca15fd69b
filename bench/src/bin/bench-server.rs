//! One HTTP server, many session stacks: the load-test target of
//! `scripts/bench.sh`.
//!
//! ```text
//! bench-server <stack> <listen-addr>
//! ```
//!
//! Every stack serves the same routes, so wrk measures only the session
//! layer and its store:
//!
//! | route | what it does |
//! |---|---|
//! | `POST /login?user=ID` | signs `ID` in (creates a session) and returns the CSRF token, if the stack has one, in `x-csrf-token` |
//! | `GET /whoami` | the signed-in user id from the session, 401 without one |
//! | `POST /counter` | increments `counter` in the session and returns the new value |
//! | `GET /counter` | the current `counter` value |
//! | `POST /__sweep` | (tessera-sqlite) starts the sweeper once |
//! | `GET /__sweep` | (tessera-sqlite) `<purged> <runs> <failures>` of the sweeper |
//!
//! Stacks: `bare`, `tessera-memory`, `tessera-sqlite`, `tessera-redis`,
//! `tessera-redis-cache` (the Redis store behind `tessera::cache::CachedStore`,
//! invalidated over Redis pub/sub, as several instances would run it),
//! `ts-memory` (tower-sessions 0.15, memory store), `ts-redis`
//! (tower-sessions 0.14 + tower-sessions-redis-store, fred) and
//! `ts-redis-sliding` (the same with `with_always_save(true)`, the only way
//! to make its idle expiry slide).
//!
//! | `GET /__cache` | (tessera-redis-cache) `hits=<n> misses=<n> flushes=<n> …` of the session cache so far |
//! | `GET /__sql` | (with `BENCH_COUNT_SQL=1`) SQL statements run so far, `<verb> <count>` per line |
//!
//! Environment: `BENCH_COUNT_SQL=1` (count sqlx's statements; costs time, so
//! the harness uses it in a separate pass), `BENCH_REDIS_URL` (Redis stacks), `BENCH_SQLITE_PATH`
//! (SQLite file), `BENCH_WORKERS` (tokio worker threads; default: the CPUs
//! this process may run on, so `taskset -c 0` gives one).
//!
//! The tessera stacks use the cookie's plain-HTTP development mode
//! (`insecure_http`), because wrk talks plain HTTP on loopback. Everything
//! else is the production default: CSRF and origin checks on `POST`, the
//! 30-minute idle timeout with its touch step, and so on.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

/// Anything the process reports as a start-up failure.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `?user=ID` of `POST /login`.
#[derive(serde::Deserialize)]
struct Login {
    user: String,
}

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (Some(stack), Some(addr)) = (args.next(), args.next()) else {
        return Err("usage: bench-server <stack> <listen-addr>".into());
    };
    if addr == "inproc" {
        let n = args.next().map_or(Ok(10_000), |n| n.parse())?;
        let path = args.next().unwrap_or_else(|| "/whoami".to_owned());
        return inproc(&stack, n, &path);
    }
    let addr: SocketAddr = addr.parse()?;
    let workers = match std::env::var("BENCH_WORKERS") {
        Ok(n) => n.parse()?,
        Err(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    runtime.block_on(serve(&stack, addr))
}

/// `bench-server <stack> inproc <n> [path]`: drives `n` requests through
/// the stack's router in this process (no sockets), after one sign-in, so
/// `valgrind --tool=callgrind` / `--tool=dhat` can count the instructions
/// and allocations a request costs per stack without the kernel and
/// without noise from other processes.
fn inproc(stack: &str, n: u64, path: &str) -> Result<(), BoxError> {
    use tower::ServiceExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let app = match stack {
            "bare" => bare::router(),
            "tessera-memory" => tessera_stack::memory()?,
            "ts-memory" => ts015::memory(),
            // With Redis (BENCH_REDIS_URL): the count then covers this
            // process's client work, not the Redis server's.
            "tessera-redis" => tessera_stack::redis().await?,
            "tessera-redis-cache" => tessera_stack::redis_cached().await?,
            "ts-redis" => ts014::redis(false).await?,
            "ts-redis-sliding" => ts014::redis(true).await?,
            other => return Err(format!("inproc: unsupported stack {other}").into()),
        };
        // What `axum::serve` does once (`into_make_service`): turn every
        // handler into a route with its state and layers applied. Without
        // it, each request would build its route afresh (boxing the
        // handler and re-applying the layers), work a real server never
        // does per request.
        let app: Router = app.with_state(());
        let login =
            axum::http::Request::post("/login?user=inproc").body(axum::body::Body::empty())?;
        let res = app.clone().oneshot(login).await?;
        let cookie = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or("anonymous=1")
            .to_owned();
        let csrf = res
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let method = if path == "/counter" { "POST" } else { "GET" };
        for _ in 0..n {
            let req = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "127.0.0.1")
                .header("cookie", &cookie)
                .header("x-csrf-token", &csrf)
                .body(axum::body::Body::empty())?;
            let res = app.clone().oneshot(req).await?;
            if !res.status().is_success() {
                return Err(format!("inproc: {path} answered {}", res.status()).into());
            }
            axum::body::to_bytes(res.into_body(), 1 << 16).await?;
        }
        Ok(())
    })
}

async fn serve(stack: &str, addr: SocketAddr) -> Result<(), BoxError> {
    let app = match stack {
        "bare" => bare::router(),
        "tessera-memory" => tessera_stack::memory()?,
        "tessera-sqlite" => tessera_stack::sqlite().await?,
        "tessera-redis" => tessera_stack::redis().await?,
        "tessera-redis-cache" => tessera_stack::redis_cached().await?,
        "ts-memory" => ts015::memory(),
        "ts-redis" => ts014::redis(false).await?,
        "ts-redis-sliding" => ts014::redis(true).await?,
        other => return Err(format!("unknown stack {other}").into()),
    };
    let app = if std::env::var("BENCH_COUNT_SQL").is_ok_and(|v| v == "1") {
        sqlcount::install()?;
        app.route("/__sql", get(sqlcount::report))
    } else {
        app
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("bench-server: {stack} on {addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            // Ctrl-C or SIGTERM from the harness: stop accepting and exit.
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn env(name: &str) -> Result<String, BoxError> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

/// Counts the statements sqlx executes, by their first keyword, from the
/// `sqlx::query` tracing events it emits for every statement.
mod sqlcount {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, SubscriberExt};

    static COUNTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

    struct Summary(Option<String>);

    impl Visit for Summary {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "summary" {
                self.0 = Some(value.to_owned());
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "summary" && self.0.is_none() {
                self.0 = Some(format!("{value:?}"));
            }
        }
    }

    struct Counter;

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counter {
        fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
            if event.metadata().target() != "sqlx::query" {
                return;
            }
            let mut summary = Summary(None);
            event.record(&mut summary);
            let verb = summary
                .0
                .as_deref()
                .and_then(|s| s.trim_matches('"').split_whitespace().next())
                .unwrap_or("?")
                .to_ascii_lowercase();
            let mut counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
            *counts.entry(verb).or_insert(0) += 1;
        }
    }

    pub(crate) fn install() -> Result<(), BoxError> {
        let subscriber = tracing_subscriber::registry().with(Counter);
        tracing::subscriber::set_global_default(subscriber)?;
        Ok(())
    }

    pub(crate) async fn report() -> String {
        let counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
        counts.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
    }
}

/// (a) No sessions at all: the ceiling of the HTTP stack on this machine.
mod bare {
    use super::*;

    static COUNTER: AtomicU64 = AtomicU64::new(0);

    pub(crate) fn router() -> Router {
        Router::new()
            .route("/login", post(|| async { "ok" }))
            .route("/whoami", get(|| async { "anonymous" }))
            .route(
                "/counter",
                post(|| async { (COUNTER.fetch_add(1, Ordering::Relaxed) + 1).to_string() })
                    .get(|| async { COUNTER.load(Ordering::Relaxed).to_string() }),
            )
    }
}

/// (b), (c), (d): tessera-axum with the memory, SQLite and Redis stores.
mod tessera_stack {
    use super::*;
    use tessera::SessionManager;
    use tessera::cookie::CookieConfig;
    use tessera::store::{MemoryStore, Store};
    use tessera_axum::{AuthUser, Session, SessionConfig, SessionLayer, SessionRejection};
    use tessera_sql::{SqlStore, Sweeper, SweeperConfig};
    use tokio::sync::Mutex;

    async fn login(session: Session, Query(q): Query<Login>) -> Result<Response, SessionRejection> {
        session.login(&q.user).await?;
        let csrf = session.csrf_token().await?.unwrap_or_default();
        Ok(([("x-csrf-token", csrf)], "ok").into_response())
    }

    async fn whoami(user: AuthUser) -> String {
        user.user_id
    }

    async fn increment(session: Session) -> Result<String, SessionRejection> {
        // A typed increment, applied by the store to its latest record in
        // one operation (Store::patch): no update is lost however many
        // requests of the same session run at once, and on Redis it is one
        // script with no read before it.
        let n = session.increment("counter", 1).await?;
        Ok(n.to_string())
    }

    async fn counter(session: Session) -> Result<String, SessionRejection> {
        Ok(session
            .get::<u64>("counter")
            .await?
            .unwrap_or(0)
            .to_string())
    }

    fn router(store: Arc<dyn Store>) -> Result<Router, BoxError> {
        let manager = SessionManager::builder_from_arc(store).build()?;
        let config =
            SessionConfig::default().with_cookie(CookieConfig::default().insecure_http(true));
        Ok(Router::new()
            .route("/login", post(login))
            .route("/whoami", get(whoami))
            .route("/counter", post(increment).get(counter))
            .layer(SessionLayer::with_config(manager, config)))
    }

    pub(crate) fn memory() -> Result<Router, BoxError> {
        router(Arc::new(MemoryStore::new()))
    }

    pub(crate) async fn redis() -> Result<Router, BoxError> {
        let url = env("BENCH_REDIS_URL")?;
        let store = tessera_redis::RedisStore::connect(
            &url,
            tessera_redis::RedisOptions::default().with_key_prefix("tessera:"),
        )
        .await?;
        router(Arc::new(store))
    }

    /// (d') The Redis store behind the per-instance session cache, which
    /// hears about every write over Redis pub/sub (docs/running-several-instances.md):
    /// a repeated read within `max_staleness` (1 s) costs no round trip.
    /// The production defaults otherwise; `GET /__cache` reports the hits
    /// and misses so the harness can print the hit rate.
    pub(crate) async fn redis_cached() -> Result<Router, BoxError> {
        use tessera::cache::{CacheConfig, CachedStore};
        let url = env("BENCH_REDIS_URL")?;
        let store = tessera_redis::RedisStore::connect(
            &url,
            tessera_redis::RedisOptions::default().with_key_prefix("tessera:"),
        )
        .await?;
        let channel = Arc::new(tessera_redis::RedisChannel::new(&store));
        let cached = Arc::new(CachedStore::new(store, CacheConfig::default(), channel));
        let stats = cached.clone();
        Ok(router(cached)?.route(
            "/__cache",
            get(move || {
                let s = stats.stats();
                async move {
                    format!(
                        "hits={} misses={} flushes={} written_through={} own_skipped={} published={}\n",
                        s.hits, s.misses, s.flushes, s.written_through, s.own_messages_skipped, s.published
                    )
                }
            }),
        ))
    }

    pub(crate) async fn sqlite() -> Result<Router, BoxError> {
        let path = env("BENCH_SQLITE_PATH")?;
        let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&format!("sqlite://{path}")).await?);
        let sweeper: Arc<Mutex<Option<Sweeper>>> = Arc::new(Mutex::new(None));
        let start = {
            let (store, sweeper) = (store.clone(), sweeper.clone());
            move || async move {
                let mut slot = sweeper.lock().await;
                if slot.is_none() {
                    // The sweeper as an application would run it, with a
                    // short interval so it works through the backlog now.
                    // BENCH_SWEEP_BATCH / BENCH_SWEEP_PACE override the
                    // batch size and pacing (for tuning runs).
                    let batch = env_or("BENCH_SWEEP_BATCH", 100);
                    let config = SweeperConfig::new(Duration::from_millis(100), batch);
                    let config = match std::env::var("BENCH_SWEEP_PACE") {
                        Ok(p) => config.with_pace(p.parse().unwrap_or(tessera_sql::DEFAULT_PACE)),
                        Err(_) => config,
                    };
                    *slot = Some(Sweeper::spawn(
                        store,
                        Arc::new(tessera::time::SystemClock),
                        config,
                    ));
                }
                "started"
            }
        };
        let stats = move || async move {
            match sweeper.lock().await.as_ref() {
                Some(s) => {
                    let s = s.stats();
                    format!("{} {} {}", s.purged, s.runs, s.failures)
                }
                None => "0 0 0".to_owned(),
            }
        };
        Ok(router(store)?.route("/__sweep", post(start).get(stats)))
    }
}

/// Handlers of both tower-sessions versions (their types differ, the code
/// is the same): the plain read-then-insert a user of that crate writes.
macro_rules! tower_sessions_handlers {
    ($ts:ident) => {
        use super::*;
        use $ts::Session;

        pub(crate) async fn login(session: Session, Query(q): Query<Login>) -> Response {
            match session.insert("user_id", q.user).await {
                Ok(()) => "ok".into_response(),
                Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }

        pub(crate) async fn whoami(session: Session) -> Response {
            match session.get::<String>("user_id").await {
                Ok(Some(user)) => user.into_response(),
                Ok(None) => StatusCode::UNAUTHORIZED.into_response(),
                Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }

        pub(crate) async fn increment(session: Session) -> Response {
            // tower-sessions has no atomic update: read, then write back.
            // Concurrent requests of one session overwrite each other.
            let n = match session.get::<u64>("counter").await {
                Ok(n) => n.unwrap_or(0) + 1,
                Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
            };
            match session.insert("counter", n).await {
                Ok(()) => n.to_string().into_response(),
                Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }

        pub(crate) async fn counter(session: Session) -> Response {
            match session.get::<u64>("counter").await {
                Ok(n) => n.unwrap_or(0).to_string().into_response(),
                Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }

        pub(crate) fn routes() -> Router {
            Router::new()
                .route("/login", post(login))
                .route("/whoami", get(whoami))
                .route("/counter", post(increment).get(counter))
        }
    };
}

/// (e) tower-sessions 0.15 with its memory store.
mod ts015 {
    tower_sessions_handlers!(tower_sessions);
    use tower_sessions::cookie::time;
    use tower_sessions::{Expiry, MemoryStore, SessionManagerLayer};

    pub(crate) fn memory() -> Router {
        let layer = SessionManagerLayer::new(MemoryStore::default())
            .with_secure(false)
            .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30)));
        routes().layer(layer)
    }
}

/// (f) tower-sessions 0.14 with tower-sessions-redis-store (fred).
mod ts014 {
    tower_sessions_handlers!(tower_sessions_014);
    use tower_sessions_014::cookie::time;
    use tower_sessions_014::{Expiry, SessionManagerLayer};
    use tower_sessions_redis_store::RedisStore;
    use tower_sessions_redis_store::fred::prelude::{Builder, ClientLike, Config};

    pub(crate) async fn redis(always_save: bool) -> Result<Router, BoxError> {
        let url = env("BENCH_REDIS_URL")?;
        // One connection with fred's automatic pipelining, as tessera-redis
        // uses: the same client setup on both sides.
        let client = Builder::from_config(Config::from_url(&url)?).build()?;
        client.init().await?;
        let layer = SessionManagerLayer::new(RedisStore::new(client))
            .with_secure(false)
            .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30)))
            .with_always_save(always_save);
        Ok(routes().layer(layer))
    }
}

/// A numeric setting from the environment, or `default`.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

