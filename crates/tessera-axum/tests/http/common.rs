//! A real server on 127.0.0.1:0 with test routes, a counting/failing store
//! and a manual clock, plus a small HTTP client that handles the cookie by
//! hand (so every attribute is visible to the tests).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Barrier;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Extension, Router};
use reqwest::header::{HeaderMap, HeaderValue};
use tessera::cookie::CookieConfig;
use tessera::store::{MemoryStore, Store};
use tessera::testkit::{CountingStore, FailingStore};
use tessera::time::{ManualClock, Timestamp};
use tessera::{SessionManager, SessionPolicy};
use tessera_axum::{
    AuthUser, CsrfToken, Session, SessionConfig, SessionLayer, SessionRejection, StatusQuery,
};

/// Start of the manual clock: 2023-11-14.
pub(crate) const START: i64 = 1_700_000_000_000;

pub(crate) fn policy() -> SessionPolicy {
    SessionPolicy::default()
        .with_idle_timeout(Duration::from_secs(30 * 60))
        .with_absolute_timeout(Duration::from_secs(12 * 3600))
        .with_touch_step(Duration::from_secs(60))
}

/// The application under test.
pub(crate) fn routes() -> Router {
    Router::new()
        .route("/noop", get(|| async { "ok" }).post(|| async { "posted" }))
        .route("/untouched", get(|_session: Session| async { "ok" }))
        .route("/login/{user}", post(login))
        .route("/login-remember/{user}", post(login_remember))
        .route("/me", get(me))
        .route("/whoami", get(whoami))
        .route("/status", get(status))
        .route("/rotate", post(rotate))
        .route("/logout", post(logout))
        .route("/set/{key}/{value}", post(set))
        .route("/get/{key}", get(read))
        .route("/counter", post(counter).get(read_counter))
        .route("/together/{key}/{value}", post(together))
        .route("/csrf", get(|CsrfToken(t): CsrfToken| async move { t }))
        .route("/echo", post(|body: String| async move { body }))
        .route("/refuse", get(refuse))
        .route("/client-ip", get(client_ip))
        .layer(Extension(Arc::new(Barrier::new(2))))
}

/// Loads the session, waits until a second request has loaded it too, then
/// sets a key: both requests hold the same version when they commit.
async fn together(
    session: Session,
    Extension(barrier): Extension<Arc<Barrier>>,
    Path((key, value)): Path<(String, String)>,
) -> Result<&'static str, SessionRejection> {
    session.record().await?;
    barrier.wait().await;
    session.insert(&key, value).await?;
    Ok("set")
}

async fn read_counter(session: Session) -> Result<String, SessionRejection> {
    Ok(session
        .get::<u64>("counter")
        .await?
        .unwrap_or(0)
        .to_string())
}

async fn login(
    session: Session,
    Path(user): Path<String>,
) -> Result<&'static str, SessionRejection> {
    session.login(&user).await?;
    Ok("signed in")
}

/// Signs in with the "keep me signed in" class, which the test policy does
/// not offer: the core answers `SessionError::Unsupported`.
async fn login_remember(
    session: Session,
    Path(user): Path<String>,
) -> Result<&'static str, SessionRejection> {
    session
        .login_with_class(&user, tessera::policy::SessionClass::Remember)
        .await?;
    Ok("signed in")
}

/// Reads the session, then refuses the request (as a handler does for a
/// wrong password or bad input).
async fn refuse(session: Session) -> Result<(http::StatusCode, &'static str), SessionRejection> {
    session.record().await?;
    Ok((http::StatusCode::BAD_REQUEST, "refused"))
}

/// The client IP recorded in the session.
async fn client_ip(session: Session) -> Result<String, SessionRejection> {
    let record = session.record().await?.ok_or(SessionRejection::MISSING)?;
    Ok(record
        .client
        .ip
        .map(|ip| ip.to_string())
        .unwrap_or_default())
}

async fn me(user: AuthUser) -> String {
    user.user_id
}

/// The user, or the end reason, or "anonymous": what the handler sees.
async fn whoami(session: Session) -> Result<String, SessionRejection> {
    if let Some(user) = session.user_id().await? {
        return Ok(user);
    }
    Ok(session.end_reason().await?.map_or_else(
        || "anonymous".to_owned(),
        |r| format!("ended:{}", r.as_code()),
    ))
}

async fn status(StatusQuery(session): StatusQuery) -> Result<String, SessionRejection> {
    let record = session.record().await?.ok_or(SessionRejection::MISSING)?;
    Ok(record.deadlines.idle.as_millis().to_string())
}

async fn rotate(session: Session) -> Result<&'static str, SessionRejection> {
    session.rotate().await?;
    Ok("rotated")
}

async fn logout(session: Session) -> Result<String, SessionRejection> {
    Ok(session.logout().await?.to_string())
}

async fn set(
    session: Session,
    Path((key, value)): Path<(String, String)>,
) -> Result<&'static str, SessionRejection> {
    session.insert(&key, value).await?;
    Ok("set")
}

async fn read(session: Session, Path(key): Path<String>) -> Result<String, SessionRejection> {
    Ok(session.get::<String>(&key).await?.unwrap_or_default())
}

async fn counter(session: Session) -> Result<String, SessionRejection> {
    let n = session
        .update("counter", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(n.to_string())
}

/// A running server and what the tests need to observe it.
pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) manager: SessionManager,
    pub(crate) clock: ManualClock,
    pub(crate) counting: CountingStore<FailingStore<MemoryStore>>,
    pub(crate) failing: FailingStore<MemoryStore>,
    pub(crate) cookie: CookieConfig,
}

impl TestApp {
    pub(crate) async fn start() -> Self {
        Self::start_with(SessionConfig::default()).await
    }

    pub(crate) async fn start_with(config: SessionConfig) -> Self {
        init_logs();
        let failing = FailingStore::new(MemoryStore::new());
        let counting = CountingStore::new(failing.clone());
        let clock = ManualClock::new(Timestamp::from_millis(START));
        let manager = SessionManager::builder(counting.clone())
            .policy(policy())
            .clock(clock.clone())
            .build()
            .unwrap();
        let cookie = config.cookie().clone();
        let base = serve(routes().layer(SessionLayer::with_config(manager.clone(), config))).await;
        Self {
            base,
            client: client(),
            manager,
            clock,
            counting,
            failing,
            cookie,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A same-origin request as a browser sends it, with the session cookie.
    pub(crate) fn get(&self, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        self.with_cookie(self.client.get(self.url(path)), token)
    }

    /// A same-origin unsafe request with the session cookie and, if given,
    /// the CSRF header.
    pub(crate) fn post(
        &self,
        path: &str,
        token: Option<&str>,
        csrf: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut rb = self
            .with_cookie(self.client.post(self.url(path)), token)
            .header("sec-fetch-site", "same-origin")
            .header("origin", self.base.clone());
        if let Some(csrf) = csrf {
            rb = rb.header("x-csrf-token", csrf);
        }
        rb
    }

    /// An unsafe request with the cookie but no Fetch-Metadata or Origin
    /// header: the test adds what it needs.
    pub(crate) fn raw_post(&self, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        self.with_cookie(self.client.post(self.url(path)), token)
    }

    pub(crate) fn with_cookie(
        &self,
        rb: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        match token {
            Some(t) => rb.header("cookie", format!("{}={t}", self.cookie.name())),
            None => rb,
        }
    }

    /// Signs `user` in and returns the token from the cookie.
    pub(crate) async fn login(&self, user: &str) -> String {
        let r = self
            .post(&format!("/login/{user}"), None, None)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        session_token(r.headers(), self.cookie.name()).expect("login sets the cookie")
    }

    /// A CSRF token for the session of `token`.
    pub(crate) async fn csrf(&self, token: &str) -> String {
        let r = self.get("/csrf", Some(token)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    pub(crate) fn store(&self) -> Arc<dyn Store> {
        Arc::clone(self.manager.store())
    }
}

pub(crate) fn client() -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert("accept", HeaderValue::from_static("application/json"));
    reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Serves `app` on a fresh local port; returns its base URL.
pub(crate) async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

/// Every `Set-Cookie` header of a response.
pub(crate) fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
        .collect()
}

/// The value the response sets for cookie `name` (empty when clearing).
pub(crate) fn session_token(headers: &HeaderMap, name: &str) -> Option<String> {
    set_cookies(headers).into_iter().find_map(|c| {
        let (pair, _) = c.split_once(';').unwrap_or((&c, ""));
        let (n, v) = pair.split_once('=')?;
        (n == name).then(|| v.to_owned())
    })
}

/// The attributes of a `Set-Cookie` value, lowercased names.
pub(crate) fn attributes(set_cookie: &str) -> Vec<(String, String)> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| {
            let (k, v) = a.split_once('=').unwrap_or((a, ""));
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect()
}

pub(crate) fn attribute(set_cookie: &str, name: &str) -> Option<String> {
    attributes(set_cookie)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

pub(crate) async fn json_error(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (
        status,
        body["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Everything logged by the test binary (a global subscriber writing here),
/// so tests can check that failures are logged.
pub(crate) fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| Mutex::new(Vec::new()))
}

pub(crate) fn logged(needle: &str) -> bool {
    String::from_utf8_lossy(&logs().lock().unwrap()).contains(needle)
}

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        logs().lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}
