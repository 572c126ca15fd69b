"""Bad input gets a clear 4xx, never a 500 or a pass, and changes nothing."""

from __future__ import annotations

from conftest import Browser


def test_junk_cookie_is_no_session(browser: Browser) -> None:
    for junk in ("x", "tss_" + "A" * 43, "tss_\u00e9", ""):
        response = browser.app.http.get(
            "/whoami", headers=[(b"cookie", f"__Host-session={junk}".encode())]
        )
        assert response.status_code == 401
        assert response.json()["error"] == "unauthenticated"


def test_two_different_session_cookies_are_no_session(browser: Browser) -> None:
    browser.login("alice")
    other = Browser(browser.app)
    other.login("bob")
    both = f"__Host-session={browser.token}; __Host-session={other.token}"
    response = browser.app.http.get("/whoami", headers={"cookie": both})
    assert response.status_code == 401
    # Both sessions are still there for their owners.
    assert browser.get("/whoami").json()["user"] == "alice"
    assert other.get("/whoami").json()["user"] == "bob"


def test_invalid_user_id_on_login_is_400_and_keeps_the_session(browser: Browser) -> None:
    browser.login("alice")
    token = browser.token
    for user in ("", "a\nb", "x" * 300):
        response = browser.post("/login", json={"user": user})
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_user_id"
        assert browser.token == token
        assert browser.get("/whoami").json()["user"] == "alice"


def test_data_over_the_limit_is_413_and_changes_nothing(browser: Browser) -> None:
    browser.login("alice")
    assert browser.post("/data", json={"key": "k", "value": "small"}).status_code == 200
    response = browser.post("/data", json={"key": "k", "value": "x" * 100_000})
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"
    assert browser.get("/data/k").json() == {"value": "small"}


def test_form_body_over_the_limit_is_413_before_the_app(browser: Browser) -> None:
    browser.login("alice")
    calls = len(browser.app.calls.seen)
    response = browser.post("/form", csrf=False, data={"csrf_token": "x", "blob": "y" * 70_000})
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert len(browser.app.calls.seen) == calls


def test_non_ascii_origin_is_refused_not_ignored(browser: Browser) -> None:
    browser.login("alice")
    headers = [
        (b"cookie", f"__Host-session={browser.token}".encode()),
        (b"x-csrf-token", (browser.csrf or "").encode()),
        (b"origin", "https://\u00e9vil.test".encode()),
    ]
    response = browser.app.http.post("/counter", headers=headers)
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_rejected"
    assert browser.app.calls.count("counter") == 0


def test_write_without_a_session_is_401_with_the_reason(browser: Browser) -> None:
    response = browser.post("/counter")
    assert response.status_code == 401
    assert response.json() == {"error": "unauthenticated", "reason": "missing"}


def test_other_cookies_do_not_reach_tessera_or_hide_the_session(browser: Browser) -> None:
    browser.login("alice")
    others = "; ".join(f"pref{i}={'x' * 30}" for i in range(150))
    both = f"{others}; __Host-session={browser.token}; theme=dark"
    response = browser.app.http.get("/whoami", headers={"cookie": both})
    assert response.status_code == 200
    assert response.json()["user"] == "alice"


def test_a_cookie_header_stuffed_past_tesseras_body_limit_is_no_session(browser: Browser) -> None:
    # 70 KB of unrelated cookies: the WSGI servers refuse such a header
    # themselves (431); under ASGI it reaches the middleware, which passes
    # tessera only the session-shaped pairs (none): no session, not a 413.
    stuffed = "; ".join(f"c{i}={'x' * 60}" for i in range(1100))
    response = browser.app.http.get("/whoami", headers={"cookie": stuffed})
    if browser.app.kind == "asgi":
        assert response.status_code == 401
        assert response.json() == {"error": "unauthenticated", "reason": "missing"}
    else:
        assert response.status_code == 431
