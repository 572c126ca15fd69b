//! The site as a person meets it: device names, times in words, the
//! password dialog, keyboard-only use, pages without JavaScript, the
//! 390 px layout, and axe-core's accessibility rules on every page.
//! Screenshots of every page at 1280 and 390 px go to `test-artifacts/`.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::Locator;
use serde_json::{Value, json};

use super::harness::{Browser, Driver, Options};
use crate::common::Server;

/// The user agents of the devices in these tests, and the names the
/// device list must show for them.
const MAC_CHROME: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const DEVICES: [(&str, &str); 5] = [
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
         (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Safari on iPhone",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Firefox on Windows",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/131.0.0.0 Mobile Safari/537.36",
        "Chrome on Android",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        "Edge on Windows",
    ),
    ("curl/8.5.0", "curl"),
];

const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

fn artifacts_dir() -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// axe-core as installed by `npm ci` in this directory (scripts/test.sh).
fn axe_source() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/browser/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core is missing at {} ({e}); run `npm ci --prefix crates/tessera-server/tests/it/browser` \
             (scripts/test.sh does)",
            path.display()
        )
    })
}

/// Runs axe-core on the current page: its serious and critical
/// violations, each as "impact rule: help at selectors".
async fn serious_violations(b: &Browser) -> Vec<String> {
    // WebDriver's scripts are not page scripts: the CSP does not apply.
    b.client
        .execute(
            "if (!window.axe) { (0, eval)(arguments[0]); } return null;",
            vec![Value::String(axe_source())],
        )
        .await
        .unwrap();
    let result = b
        .client
        .execute_async(
            "var done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] }).then(function (r) {
               done(r.violations
                 .filter(function (v) { return v.impact === 'serious' || v.impact === 'critical'; })
                 .map(function (v) {
                   return v.impact + ' ' + v.id + ': ' + v.help + ' at ' +
                     v.nodes.map(function (n) { return n.target.join(' '); }).join(', ');
                 }));
             }, function (e) { done(['axe failed: ' + e]); });",
            Vec::new(),
        )
        .await
        .unwrap();
    result
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Fails on any serious or critical axe-core violation, naming the rule
/// and the elements.
async fn assert_accessible(b: &Browser, page: &str) {
    let violations = serious_violations(b).await;
    assert!(
        violations.is_empty(),
        "axe-core found serious or critical violations on {page}:\n{}",
        violations.join("\n")
    );
}

/// Resizes the window to `width`, checks that nothing scrolls sideways, and
/// saves a screenshot of the whole page as `NAME-WIDTH.png`.
async fn capture(b: &Browser, name: &str, width: u32) {
    b.client.set_window_size(width, 900).await.unwrap();
    b.wait_until(
        &format!("window.innerWidth <= {width}"),
        "the window to take its new width",
    )
    .await;
    let overflow = b
        .js("return [document.documentElement.scrollWidth, document.documentElement.clientWidth];")
        .await;
    let (scroll, client) = (overflow[0].as_u64(), overflow[1].as_u64());
    assert!(
        scroll <= client,
        "{name} scrolls sideways at {width} px: scrollWidth {scroll:?} > clientWidth {client:?}"
    );
    // Tall enough for the whole page.
    let height = b
        .js("return Math.ceil(document.documentElement.scrollHeight);")
        .await
        .as_u64()
        .unwrap_or(900);
    let height = u32::try_from(height.clamp(600, 3000)).unwrap() + 120;
    b.client.set_window_size(width, height).await.unwrap();
    let png = b.client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(artifacts_dir().join(format!("{name}-{width}.png")), png).unwrap();
}

/// Accessibility at both widths, and the screenshots.
pub async fn check_page(b: &Browser, name: &str) {
    for width in [1280, 390] {
        capture(b, name, width).await;
        assert_accessible(b, &format!("{name} at {width} px")).await;
    }
}

/// Signs in through the JSON API as another device with `user_agent`.
async fn sign_in_elsewhere(server: &Server, user_agent: &str) {
    let res = reqwest::Client::new()
        .post(server.at("/login"))
        .header("user-agent", user_agent)
        .json(&json!({"username": "demo", "password": server.demo_password()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// The user's sessions as the server stores them (`tessera sessions list`
/// would do too; the JSON API needs no second browser).
async fn session_count(server: &Server, b: &Browser) -> usize {
    let cookie = b
        .client
        .get_named_cookie(server.cookie_name())
        .await
        .unwrap();
    let res = reqwest::Client::new()
        .get(server.at("/sessions"))
        .header("accept", "application/json")
        .header(
            "cookie",
            format!("{}={}", server.cookie_name(), cookie.value()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Vec<Value>>().await.unwrap().len()
}

fn names_on_page(html: &str) -> Vec<&str> {
    html.split("<h2 class=\"device-name\">")
        .skip(1)
        .filter_map(|rest| rest.split(" <span").next())
        .filter_map(|name| name.split("</h2>").next())
        .collect()
}

#[tokio::test]
async fn device_list_names_devices_and_signs_out_through_one_password_dialog() {
    let server = Server::start_secure(&[]);
    for (ua, _) in DEVICES {
        sign_in_elsewhere(&server, ua).await;
    }
    let mut driver = Driver::start().await;
    let b = driver
        .browser_with(&Options {
            user_agent: Some(MAC_CHROME),
            ..Options::default()
        })
        .await;
    b.sign_in(&server.url, "demo", server.demo_password()).await;
    check_page(&b, "home").await;

    b.goto(&server.at("/sessions")).await;
    let html = b.source().await;
    let names = names_on_page(&html);
    // This device first, named and marked; then the others by name.
    assert_eq!(names.first(), Some(&"Chrome on macOS"), "{html}");
    for (_, want) in DEVICES {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    assert_eq!(
        b.js("return document.querySelector('li.device.current .badge').textContent;")
            .await,
        Value::String("This device".into())
    );
    // No raw user agent and no internal handle is shown as text.
    let text = b
        .js("return document.querySelector('main').innerText;")
        .await;
    let text = text.as_str().unwrap();
    assert!(
        !text.contains("Mozilla/5.0") && !text.contains("tsh_"),
        "{text}"
    );
    // Times are phrased for people, with the exact local time in the title.
    let last_active = b
        .js(
            "var t = document.querySelector('li.device.current time[data-format=relative]');
             return [t.textContent, t.title, t.getAttribute('datetime')];",
        )
        .await;
    assert_eq!(last_active[0], Value::String("now".into()), "{last_active}");
    assert!(
        last_active[1].as_str().unwrap().len() > 10
            && !last_active[1].as_str().unwrap().contains("UTC"),
        "title shows the local time: {last_active}"
    );
    // One password field in the page (the dialog's), not one per row.
    assert_eq!(
        b.js("return document.querySelectorAll('input[type=password]').length;")
            .await,
        Value::from(1)
    );
    check_page(&b, "devices").await;

    // "Sign out" on the iPhone: the dialog names it and asks once.
    let before = session_count(&server, &b).await;
    assert_eq!(before, 6);
    b.client.set_window_size(1280, 900).await.unwrap();
    b.click("li.device:not(.current) a.revoke").await;
    b.wait_until(
        "document.getElementById('confirm-dialog').open \
         && document.activeElement === document.getElementById('dialog-password')",
        "the password dialog, focused on the password",
    )
    .await;
    let what = b
        .js("return document.getElementById('dialog-what').textContent;")
        .await;
    let target = b
        .js("return document.querySelector('li.device:not(.current) a.revoke').dataset.what;")
        .await;
    assert_eq!(what, target);
    check_page(&b, "devices-dialog").await;

    // A wrong password: refused in place (401), nothing revoked.
    b.client.set_window_size(1280, 900).await.unwrap();
    b.type_into("#dialog-password", "not-the-password").await;
    b.click_and_load("#dialog-form button[type='submit']").await;
    let html = b.source().await;
    assert!(
        html.contains("The password is not correct; no session was revoked."),
        "{html}"
    );
    assert_eq!(session_count(&server, &b).await, before);
    check_page(&b, "devices-refused").await;

    // "Sign out all other devices" with the right password.
    b.client.set_window_size(1280, 900).await.unwrap();
    b.click("#revoke-others").await;
    b.wait_until(
        "document.getElementById('confirm-dialog').open",
        "the password dialog",
    )
    .await;
    b.type_into("#dialog-password", server.demo_password())
        .await;
    b.click_and_load("#dialog-form button[type='submit']").await;
    b.wait_until("location.pathname === '/sessions'", "the device list")
        .await;
    assert_eq!(session_count(&server, &b).await, 1);
    assert_eq!(names_on_page(&b.source().await), vec!["Chrome on macOS"]);
}

#[tokio::test]
async fn keyboard_only_sign_in_and_device_sign_out() {
    let server = Server::start_secure(&[]);
    sign_in_elsewhere(&server, DEVICES[0].0).await;
    let mut driver = Driver::start().await;
    let b = driver.browser().await;

    b.goto(&server.at("/login?reason=signed_out")).await;
    check_page(&b, "signed-out").await;
    b.goto(&server.at("/login")).await;
    check_page(&b, "sign-in").await;
    b.client.set_window_size(1280, 900).await.unwrap();

    // A wrong password first: the refusal is announced in the page.
    tab_to(&b, "document.activeElement.name === 'username'").await;
    press(&b, "demo").await;
    press(&b, TAB).await;
    press(&b, "not-the-password").await;
    b.js("window.__beforeSubmit = true; return null;").await;
    press(&b, ENTER).await;
    b.wait_until(
        "window.__beforeSubmit === undefined && document.readyState === 'complete' \
         && document.querySelector('[role=alert]') !== null",
        "the refused sign-in",
    )
    .await;
    check_page(&b, "sign-in-refused").await;
    b.client.set_window_size(1280, 900).await.unwrap();

    b.goto(&server.at("/login")).await;
    tab_to(&b, "document.activeElement.name === 'username'").await;
    press(&b, "demo").await;
    press(&b, TAB).await;
    b.wait_until(
        "document.activeElement.name === 'password'",
        "Tab to move to the password",
    )
    .await;
    press(&b, server.demo_password()).await;
    press(&b, ENTER).await;
    b.wait_until(
        "document.getElementById('user') !== null",
        "the home page after a keyboard sign-in",
    )
    .await;
    assert_eq!(b.shown_user().await.as_deref(), Some("demo"));

    b.goto(&server.at("/sessions")).await;
    tab_to(
        &b,
        "document.activeElement.matches('li.device:not(.current) a.revoke')",
    )
    .await;
    press(&b, ENTER).await;
    b.wait_until(
        "document.getElementById('confirm-dialog').open \
         && document.activeElement === document.getElementById('dialog-password')",
        "the dialog to open with the password focused",
    )
    .await;
    // Escape closes it without signing anything out.
    press(&b, "\u{E00C}").await;
    b.wait_until(
        "!document.getElementById('confirm-dialog').open",
        "Escape to close the dialog",
    )
    .await;
    assert_eq!(session_count(&server, &b).await, 2);

    tab_to(
        &b,
        "document.activeElement.matches('li.device:not(.current) a.revoke')",
    )
    .await;
    press(&b, ENTER).await;
    b.wait_until(
        "document.activeElement === document.getElementById('dialog-password')",
        "the password field",
    )
    .await;
    b.js("window.__beforeSubmit = true; return null;").await;
    press(&b, server.demo_password()).await;
    press(&b, ENTER).await;
    b.wait_until(
        "window.__beforeSubmit === undefined && document.readyState === 'complete' \
         && document.querySelectorAll('li.device').length === 1",
        "the device list with this device only",
    )
    .await;
    assert_eq!(session_count(&server, &b).await, 1);
}

/// Sends keys to the focused element.
async fn press(b: &Browser, keys: &str) {
    b.client
        .active_element()
        .await
        .unwrap()
        .send_keys(keys)
        .await
        .unwrap();
}

/// Presses Tab until `condition` holds (at most 30 times).
async fn tab_to(b: &Browser, condition: &str) {
    for _ in 0..30 {
        if b.js(&format!("return !!({condition});")).await == Value::Bool(true) {
            return;
        }
        press(b, TAB).await;
    }
    panic!("Tab never reached the element where {condition}");
}

#[tokio::test]
async fn pages_work_without_javascript() {
    let server = Server::start_secure(&[]);
    sign_in_elsewhere(&server, DEVICES[1].0).await;
    let mut driver = Driver::start().await;
    let b = driver
        .browser_with(&Options {
            javascript: false,
            ..Options::default()
        })
        .await;
    // Page scripts really are off: app.js would rewrite this time.
    b.goto(&server.at("/login")).await;
    let find = |css: &'static str| b.client.find(Locator::Css(css));
    find("input[name='username']")
        .await
        .unwrap()
        .send_keys("demo")
        .await
        .unwrap();
    find("input[name='password']")
        .await
        .unwrap()
        .send_keys(server.demo_password())
        .await
        .unwrap();
    find("form[action='/login'] button[type='submit']")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&b, "/").await;
    let html = b.source().await;
    assert!(html.contains("Signed in as"), "{html}");
    // The server's UTC text stays: no script rewrote it.
    let since = find("#since").await.unwrap().text().await.unwrap();
    assert!(since.ends_with(" UTC"), "{since}");

    // "Sign out" opens the confirmation in the page, as a form.
    b.goto(&server.at("/sessions")).await;
    find("li.device:not(.current) a.revoke")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while !b.source().await.contains("id=\"confirm\"") {
        assert!(
            started.elapsed() < super::harness::WAIT,
            "no confirmation in the page"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    find("#confirm-password")
        .await
        .unwrap()
        .send_keys(server.demo_password())
        .await
        .unwrap();
    find("#confirm-form button[type='submit']")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&b, "/sessions").await;
    let started = std::time::Instant::now();
    while names_on_page(&b.source().await).len() != 1 {
        assert!(
            started.elapsed() < super::harness::WAIT,
            "the other device is still listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(session_count(&server, &b).await, 1);
}

/// Waits (bounded) until the browser shows `path` without a query.
async fn wait_for_path(b: &Browser, path: &str) {
    let started = std::time::Instant::now();
    loop {
        let url = b.client.current_url().await.unwrap();
        if url.path() == path {
            return;
        }
        assert!(
            started.elapsed() < super::harness::WAIT,
            "never reached {path}; at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The accessibility check can fail: an unlabelled field and unreadable
/// text added to a real page are reported.
#[tokio::test]
async fn the_accessibility_check_reports_what_it_should() {
    let server = Server::start_secure(&[]);
    let mut driver = Driver::start().await;
    let b = driver.browser().await;
    b.goto(&server.at("/login")).await;
    assert_eq!(serious_violations(&b).await, Vec::<String>::new());
    b.js(
        "var i = document.createElement('input'); i.name = 'unlabelled';
          document.querySelector('form').appendChild(i);
          var p = document.createElement('p'); p.textContent = 'faint';
          p.style.color = '#f4f4f4'; p.style.background = '#ffffff';
          document.querySelector('main').appendChild(p);
          return null;",
    )
    .await;
    let found = serious_violations(&b).await;
    assert!(
        found.iter().any(|v| v.contains(" label: "))
            && found.iter().any(|v| v.contains("color-contrast")),
        "{found:?}"
    );
}

/// The dark scheme (`prefers-color-scheme: dark`): every signed-in page
/// passes axe-core there too (contrast differs), and is captured.
#[tokio::test]
async fn dark_scheme_pages_are_accessible() {
    let server = Server::start_secure(&[]);
    sign_in_elsewhere(&server, DEVICES[0].0).await;
    let mut driver = Driver::start().await;
    let b = driver
        .browser_with(&Options {
            user_agent: Some(MAC_CHROME),
            dark: true,
            ..Options::default()
        })
        .await;
    b.goto(&server.at("/login")).await;
    assert_eq!(
        b.js("return matchMedia('(prefers-color-scheme: dark)').matches;")
            .await,
        Value::Bool(true),
        "the browser does not ask for the dark scheme"
    );
    check_page(&b, "sign-in-dark").await;
    b.sign_in(&server.url, "demo", server.demo_password()).await;
    check_page(&b, "home-dark").await;
    b.goto(&server.at("/sessions")).await;
    check_page(&b, "devices-dark").await;
    b.client.set_window_size(1280, 900).await.unwrap();
    b.click("li.device:not(.current) a.revoke").await;
    b.wait_until(
        "document.getElementById('confirm-dialog').open",
        "the password dialog",
    )
    .await;
    check_page(&b, "devices-dialog-dark").await;
}

/// The browser helper across tabs: "Stay signed in" in one tab moves the
/// deadline shown in the other (one keepalive, broadcast), and signing out
/// in one tab takes the other to the sign-in page, which says why.
#[tokio::test]
async fn tabs_share_the_keepalive_and_the_sign_out() {
    // 12 s idle timeout: the pages warn in the last 3 s. The touch step
    // keeps page loads from moving the deadline.
    let mut server = Server::start_secure(&[
        ("TESSERA_IDLE_TIMEOUT", "12s"),
        ("TESSERA_TOUCH_STEP", "11s"),
    ]);
    let start = server.clock_ms;
    let mut driver = Driver::start().await;
    let b = driver.browser().await;
    b.sign_in(&server.url, "demo", server.demo_password()).await;
    let first = b.client.window().await.unwrap();
    let second = b.client.new_window(true).await.unwrap().handle;

    // Ten seconds later both tabs open with the idle warning showing.
    server.advance(Duration::from_secs(10));
    b.client.switch_to_window(second.clone()).await.unwrap();
    b.goto(&server.url).await;
    b.wait_until(
        "!document.getElementById('idle-warning').hidden",
        "the warning in the second tab",
    )
    .await;
    b.client.switch_to_window(first.clone()).await.unwrap();
    b.goto(&server.url).await;
    b.wait_until(
        "!document.getElementById('idle-warning').hidden",
        "the warning in the first tab",
    )
    .await;

    // "Stay signed in" in the first tab: the second learns the new deadline
    // from the broadcast.
    b.click("#stay").await;
    let extended = start + 10_000 + 12_000;
    let moved = format!(
        "Date.parse(document.getElementById('idle-at').getAttribute('datetime')) === {extended} \
         && document.getElementById('idle-warning').hidden"
    );
    b.wait_until(&moved, "the new deadline in the first tab")
        .await;
    b.client.switch_to_window(second.clone()).await.unwrap();
    b.wait_until(&moved, "the new deadline in the second tab")
        .await;

    // Sign out in the second tab: the first goes to the sign-in page by
    // itself.
    b.click_and_load("form[action='/logout'] button").await;
    b.client.switch_to_window(first).await.unwrap();
    b.wait_until(
        "location.pathname === '/login' && location.search === '?reason=signed_out'",
        "the first tab to follow the sign-out",
    )
    .await;
    let reason = b
        .js("var r = document.getElementById('reason'); return r ? r.textContent : null;")
        .await;
    assert_eq!(reason, Value::String("You have signed out.".into()));
}

/// The security activity page: sign-ins with device and IP, a device
/// signed out by the user (from which device), a password change, and an
/// administrator's revocation, newest first.
#[tokio::test]
async fn security_activity_tells_what_happened_and_from_where() {
    let server = Server::start_secure(&[]);
    sign_in_elsewhere(&server, DEVICES[0].0).await;
    let mut driver = Driver::start().await;
    let b = driver
        .browser_with(&Options {
            user_agent: Some(MAC_CHROME),
            ..Options::default()
        })
        .await;
    b.sign_in(&server.url, "demo", server.demo_password()).await;

    // Sign the iPhone out from the device list.
    b.goto(&server.at("/sessions")).await;
    b.click("li.device:not(.current) a.revoke").await;
    b.wait_until(
        "document.getElementById('confirm-dialog').open",
        "the password dialog",
    )
    .await;
    b.type_into("#dialog-password", server.demo_password())
        .await;
    b.click_and_load("#dialog-form button[type='submit']").await;
    b.wait_until(
        "document.querySelectorAll('li.device').length === 1",
        "the iPhone gone from the list",
    )
    .await;

    // An administrator ends every session of demo; demo signs in again.
    let (ok, out, err) = server.cli(&["sessions", "revoke", "--user", "demo"], None);
    assert!(ok, "{out}{err}");
    b.sign_in(&server.url, "demo", server.demo_password()).await;
    b.goto(&server.at("/activity")).await;
    let events = b
        .js(
            "return Array.from(document.querySelectorAll('li.event')).map(function (li) {
               return li.querySelector('.event-what').textContent + ' | ' +
                 li.querySelector('p').textContent; });",
        )
        .await;
    let events: Vec<String> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        events,
        [
            "Signed in | Chrome on macOS · IP address 127.0.0.1",
            "Signed out by an administrator (1 device) | every device of the account",
            "Signed out Safari on iPhone | by you, from Chrome on macOS · IP address 127.0.0.1",
            "Signed in | Chrome on macOS · IP address 127.0.0.1",
            "Signed in | Safari on iPhone · IP address 127.0.0.1",
        ],
        "{events:#?}"
    );
    // Times for people here too.
    assert_eq!(
        b.js("return document.querySelector('li.event time').textContent;")
            .await,
        Value::String("now".into())
    );
    check_page(&b, "activity").await;
}

/// An app signed in through the token endpoint; its used refresh token is
/// presented again after the grace period (a stolen copy): the session
/// ends, and the user's security activity says so, next to the app's
/// sign-in with its device name.
#[tokio::test]
async fn security_activity_shows_refresh_token_reuse() {
    let mut server = Server::start_secure(&[("TESSERA_PASSWORD_GRANT", "true")]);
    let http = reqwest::Client::new();
    let res = http
        .post(server.at("/token"))
        .header("user-agent", "curl/8.5.0")
        .form(&[
            ("grant_type", "password"),
            ("username", "demo"),
            ("password", server.demo_password()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let first: Value = res.json().await.unwrap();
    let stolen = first["refresh_token"].as_str().unwrap().to_owned();
    let refresh_url = server.at("/v1/tokens/refresh");
    let refresh = |token: String| {
        http.post(&refresh_url)
            .json(&json!({ "refresh_token": token }))
            .send()
    };
    assert_eq!(refresh(stolen.clone()).await.unwrap().status(), 200);
    // Past the grace period for a retried refresh: this is reuse.
    server.advance(Duration::from_secs(11));
    let res = refresh(stolen).await.unwrap();
    assert_eq!(res.status(), 401);

    let mut driver = Driver::start().await;
    let b = driver.browser().await;
    b.sign_in(&server.url, "demo", server.demo_password()).await;
    b.goto(&server.at("/activity")).await;
    let kinds = b
        .js(
            "return Array.from(document.querySelectorAll('li.event')).map(function (li) {
               return li.className.replace('event ', ''); });",
        )
        .await;
    assert_eq!(
        kinds,
        json!(["signed_in", "refresh_reuse_detected", "signed_in"]),
        "{}",
        b.source().await
    );
    let app = b
        .js("return document.querySelectorAll('li.event')[2].querySelector('p').textContent;")
        .await;
    assert_eq!(app, Value::String("curl · IP address 127.0.0.1".into()));
    check_page(&b, "activity-reuse").await;
}

#[tokio::test]
async fn keep_me_signed_in_is_a_labelled_checkbox_usable_by_keyboard() {
    let server = Server::start_secure(&[
        ("TESSERA_REMEMBER_IDLE_TIMEOUT", "1d"),
        ("TESSERA_REMEMBER_ABSOLUTE_TIMEOUT", "30d"),
    ]);
    let mut driver = Driver::start().await;
    let b = driver.browser().await;
    b.goto(&server.at("/login")).await;
    check_page(&b, "sign-in-remember").await;
    b.client.set_window_size(1280, 900).await.unwrap();
    // One label names the box, and it starts unticked.
    assert_eq!(
        b.js("var box = document.getElementById('remember'); \
              return [box.type, box.labels.length, box.labels[0].textContent.trim(), box.checked];")
            .await,
        json!(["checkbox", 1, "Keep me signed in", false])
    );

    // Keyboard only: user name, password, Tab to the box, Space ticks it,
    // Tab to the button, Enter signs in.
    tab_to(&b, "document.activeElement.name === 'username'").await;
    press(&b, "demo").await;
    press(&b, TAB).await;
    press(&b, server.demo_password()).await;
    press(&b, TAB).await;
    b.wait_until(
        "document.activeElement.id === 'remember'",
        "Tab to reach the checkbox after the password",
    )
    .await;
    press(&b, " ").await;
    b.wait_until(
        "document.getElementById('remember').checked",
        "Space to tick the checkbox",
    )
    .await;
    tab_to(&b, "document.activeElement.type === 'submit'").await;
    press(&b, ENTER).await;
    b.wait_until(
        "document.getElementById('user') !== null",
        "the home page after a keyboard sign-in",
    )
    .await;

    // The cookie lives as long as the remember class: about 30 days, not
    // the default 12 hours.
    let cookie = b
        .client
        .get_named_cookie(server.cookie_name())
        .await
        .unwrap();
    let expires = cookie
        .expires_datetime()
        .unwrap_or_else(|| panic!("a persistent cookie: {cookie:?}"))
        .unix_timestamp();
    let now = crate::common::now_ms() / 1000;
    assert!(expires > now + 29 * 24 * 3600, "{cookie:?}");
}
