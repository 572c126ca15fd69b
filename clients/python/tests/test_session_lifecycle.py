"""Sign-in, rotation, sign-out and data, through both middlewares over real
HTTP against a real tessera."""

from __future__ import annotations

import httpx

from conftest import App, Browser, parse_set_cookie
from tessera_server import TesseraServer


def token_is_live(tessera: TesseraServer, token: str) -> bool:
    """Asks tessera directly (not through the app) whether a token works."""
    response = httpx.post(
        f"{tessera.url}/v1/sessions/verify",
        json={"token": token, "touch": False},
        headers={"authorization": f"Bearer {tessera.api_key}"},
    )
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def test_sign_in_sets_a_secure_cookie(browser: Browser) -> None:
    response = browser.login("alice")
    [set_cookie] = response.headers.get_list("set-cookie")
    name, value, attrs = parse_set_cookie(set_cookie)
    assert name == "__Host-session"
    assert value.startswith("tss_")
    assert "secure" in attrs and "httponly" in attrs
    assert attrs["samesite"] == "Strict"
    assert attrs["path"] == "/"
    assert "domain" not in attrs
    assert 0 < int(attrs["max-age"]) <= 12 * 3600
    # A response that installs a token must not be stored by a cache.
    assert response.headers["cache-control"] == "no-store"

    whoami = browser.get("/whoami")
    assert whoami.status_code == 200
    assert whoami.json()["user"] == "alice"


def test_sign_in_rotates_and_kills_the_old_token(browser: Browser, tessera: TesseraServer) -> None:
    browser.login("alice")
    first_token = browser.token
    assert first_token is not None
    assert browser.post("/data", json={"key": "secret", "value": "alice's"}).status_code == 200

    # Signing in again, as another user: a new token, the old one dead, and
    # nothing of the previous user's data.
    browser.login("bob")
    assert browser.token != first_token
    me = browser.get("/whoami").json()
    assert me["user"] == "bob"
    assert me["data"] == {}
    assert not token_is_live(tessera, first_token)

    # The old cookie, replayed, opens nothing.
    stale = Browser(browser.app)
    stale.cookies = {"__Host-session": first_token}
    refused = stale.get("/whoami")
    assert refused.status_code == 401
    assert refused.json()["reason"] in ("missing", "revoked", "signed_out")


def test_sign_in_over_a_planted_token_does_not_adopt_it(
    browser: Browser, tessera: TesseraServer
) -> None:
    # An attacker signs in, then plants their token in the victim's browser
    # (fixation). The victim signs in: the planted token dies.
    attacker = Browser(browser.app)
    attacker.login("mallory")
    planted = attacker.token
    assert planted is not None
    browser.cookies = dict(attacker.cookies)
    browser.csrf = attacker.csrf
    browser.login("alice")
    assert browser.token != planted
    assert not token_is_live(tessera, planted)
    assert attacker.get("/whoami").status_code == 401


def test_rotate_replaces_the_token_of_the_same_session(
    browser: Browser, tessera: TesseraServer
) -> None:
    browser.login("alice")
    before = browser.get("/whoami").json()
    old_token = browser.token
    assert old_token is not None
    response = browser.post("/rotate")
    assert response.status_code == 200, response.text
    assert browser.token != old_token
    after = browser.get("/whoami").json()
    assert after["user"] == "alice"
    assert after["handle"] == before["handle"]
    assert not token_is_live(tessera, old_token)


def test_logout_clears_the_cookie_and_ends_the_session(
    browser: Browser, tessera: TesseraServer
) -> None:
    browser.login("alice")
    token = browser.token
    assert token is not None
    response = browser.post("/logout")
    assert response.status_code == 200, response.text
    [cleared] = response.headers.get_list("set-cookie")
    name, value, attrs = parse_set_cookie(cleared)
    assert name == "__Host-session"
    assert value == ""
    assert attrs["max-age"] == "0"
    assert response.headers["clear-site-data"] == '"cookies"'
    assert browser.token is None
    assert not token_is_live(tessera, token)
    # The old cookie, replayed, opens nothing.
    replay = Browser(browser.app)
    replay.cookies = {"__Host-session": token}
    assert replay.get("/whoami").status_code == 401


def test_data_set_and_get(browser: Browser) -> None:
    browser.login("alice")
    assert browser.post("/data", json={"key": "theme", "value": "dark"}).status_code == 200
    assert browser.get("/data/theme").json() == {"value": "dark"}
    assert browser.get("/whoami").json()["data"] == {"theme": "dark"}


def test_session_reports_deadlines_and_a_csrf_token(browser: Browser) -> None:
    browser.login("alice")
    me = browser.get("/whoami").json()
    assert me["expires_at"] == min(me["idle_expires_at"], me["absolute_expires_at"])
    assert me["csrf_token"]


def test_anonymous_request_has_no_user_and_sets_no_cookie(app: App) -> None:
    response = app.http.get("/whoami")
    assert response.status_code == 401
    assert response.json() == {"error": "unauthenticated", "reason": "missing"}
    assert response.headers.get_list("set-cookie") == []
