//! Driving Debian's Chromium through chromedriver (WebDriver, fantoccini).
//!
//! Every test gets its own chromedriver on a free port and one or more
//! browser profiles, each with a fresh `--user-data-dir` (its own cookie
//! jar and cache). The background-networking flags keep Chromium from
//! calling out to update, sync and safe-browsing services, which on a
//! closed network only produce refused connections.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, SemaphorePermit};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The browsers' time zone.
pub const BROWSER_TZ: &str = "America/New_York";

/// How long any single wait for the page may take. Generous: it bounds a
/// hang, it is not a timing assertion.
pub const WAIT: Duration = Duration::from_secs(45);

/// At most two browser tests at once: each runs a server, a chromedriver and
/// Chromium's process tree, on a 2-core machine.
static SLOTS: Semaphore = Semaphore::const_new(2);

/// Fails (never skips) when the packages are missing.
fn require_packages() {
    let missing: Vec<&str> = [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")]
        .iter()
        .filter(|(bin, _)| !Path::new(bin).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    assert!(
        missing.is_empty(),
        "the browser tests need the Debian packages {missing:?} ({CHROMIUM}, {CHROMEDRIVER}); \
         install them with `apt-get install chromium chromium-driver` (scripts/test.sh does)"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How a browser is started.
pub struct Options {
    /// The `User-Agent` it sends (Chromium's own when `None`).
    pub user_agent: Option<&'static str>,
    /// Whether pages may run JavaScript.
    pub javascript: bool,
    /// Whether the system asks for the dark colour scheme
    /// (`prefers-color-scheme: dark`).
    pub dark: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            user_agent: None,
            javascript: true,
            dark: false,
        }
    }
}

/// A chromedriver process, killed on drop.
pub struct Driver {
    child: Child,
    url: String,
    _slot: SemaphorePermit<'static>,
    profiles: Vec<tempfile::TempDir>,
}

impl Driver {
    pub async fn start() -> Self {
        require_packages();
        let slot = SLOTS.acquire().await.unwrap();
        let port = free_port();
        // Browsers run in a time zone other than the server's UTC, so a
        // test can tell local times from the server's.
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("TZ", BROWSER_TZ)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        // Wait (bounded) until chromedriver accepts connections.
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < WAIT,
                "chromedriver did not listen on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            url,
            _slot: slot,
            profiles: Vec::new(),
        }
    }

    /// A new browser with a fresh profile.
    pub async fn browser(&mut self) -> Browser {
        self.browser_with(&Options::default()).await
    }

    /// A new browser with a fresh profile and `options`.
    pub async fn browser_with(&mut self, options: &Options) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        let mut extra = Vec::new();
        if let Some(ua) = options.user_agent {
            extra.push(format!("--user-agent={ua}"));
        }
        if options.dark {
            // Blink's preferred colour scheme: 0 is dark.
            extra.push("--blink-settings=preferredColorScheme=0".to_owned());
            extra.push("--force-dark-mode".to_owned());
        }
        // Page scripts off through the content setting (as a person who
        // disables JavaScript would); WebDriver's own scripts still run.
        let prefs = if options.javascript {
            json!({})
        } else {
            json!({ "profile.managed_default_content_settings.javascript": 2 })
        };
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1024,900",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend(extra);
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "prefs": prefs, "args": args }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"));
        self.profiles.push(profile);
        Browser { client }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Ending chromedriver ends the Chromium processes it started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser profile.
pub struct Browser {
    pub client: Client,
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.unwrap()
    }

    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// Waits (bounded by [`WAIT`]) until the JavaScript expression is true.
    pub async fn wait_until(&self, expression: &str, what: &str) {
        let script = format!("return !!({expression});");
        let started = Instant::now();
        loop {
            // A navigation in progress can make one execution fail.
            if let Ok(Value::Bool(true)) = self.client.execute(&script, Vec::new()).await {
                return;
            }
            if started.elapsed() > WAIT {
                let url = self.client.current_url().await.map(|u| u.to_string());
                let body = self.client.source().await.unwrap_or_default();
                panic!("timed out waiting for {what} ({expression}); at {url:?}:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Signs in through the form on `/login` of `base`.
    pub async fn sign_in(&self, base: &str, user: &str, password: &str) {
        self.goto(&format!("{base}/login")).await;
        let form = self
            .client
            .form(Locator::Css("form[action='/login']"))
            .await
            .unwrap();
        form.set_by_name("username", user).await.unwrap();
        form.set_by_name("password", password).await.unwrap();
        form.submit_with(Locator::Css("button[type='submit']"))
            .await
            .unwrap();
        self.wait_until(
            "document.getElementById('user') !== null",
            "the home page after sign-in",
        )
        .await;
    }

    /// The signed-in user shown on the home page, if it is shown.
    pub async fn shown_user(&self) -> Option<String> {
        match self
            .js("var u = document.getElementById('user'); return u ? u.textContent : null;")
            .await
        {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Clicks the element found by a CSS selector and waits until a new
    /// document has loaded (the click submits a form or follows a link).
    pub async fn click_and_load(&self, css: &str) {
        self.js("window.__beforeClick = true; return null;").await;
        self.click(css).await;
        self.wait_until(
            "window.__beforeClick === undefined && document.readyState === 'complete'",
            &format!("the page loaded by clicking {css}"),
        )
        .await;
    }

    /// Types `text` into the input found by a CSS selector.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .send_keys(text)
            .await
            .unwrap();
    }

    /// Clicks the element found by a CSS selector.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .click()
            .await
            .unwrap();
    }
}
