"""Idle and absolute expiry, each on its own tessera with short timeouts:
the app sees no session and the reason, and the dead cookie is cleared.

These tests wait for a deadline to pass (a few seconds); they assert what
happened after it, never how long anything took."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import KINDS, Browser, config_for, parse_set_cookie, running_app, start_tessera
from tessera_server import TesseraServer


@pytest.fixture(scope="module")
def short_idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TesseraServer]:
    server = start_tessera(
        Path(tmp_path_factory.mktemp("idle")),
        idle_timeout="3s",
        absolute_timeout="1h",
        touch_step="1s",
        sweep_interval="1h",
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def short_absolute(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TesseraServer]:
    server = start_tessera(
        Path(tmp_path_factory.mktemp("absolute")),
        idle_timeout="1h",
        absolute_timeout="5s",
        sweep_interval="1h",
    )
    yield server
    server.stop()


def wait_past(deadline_iso: str) -> None:
    """Sleeps until a reported deadline has surely passed. tessera reports
    deadlines in whole seconds (RFC 3339 without fraction), so the real one
    may be up to a second later than the reported one."""
    deadline = datetime.fromisoformat(deadline_iso) + timedelta(seconds=1.5)
    while datetime.now(timezone.utc) <= deadline:
        time.sleep(0.25)


def assert_ended(browser: Browser, reason: str, token: str | None = None) -> None:
    response = browser.get(
        "/whoami", headers={"cookie": f"__Host-session={token}"} if token else None
    )
    assert response.status_code == 401
    assert response.json() == {"error": "unauthenticated", "reason": reason}
    # tessera asks for the dead cookie to be cleared, and the middleware
    # passes that on.
    [cleared] = response.headers.get_list("set-cookie")
    name, value, attrs = parse_set_cookie(cleared)
    assert (name, value, attrs["max-age"]) == ("__Host-session", "", "0")


@pytest.mark.parametrize("kind", KINDS)
def test_idle_expiry_ends_the_session_with_its_reason(short_idle: TesseraServer, kind: str) -> None:
    with running_app(kind, config_for(short_idle)) as app:
        browser = Browser(app)
        browser.login("alice")
        me = browser.get("/whoami").json()
        token = browser.token
        wait_past(me["idle_expires_at"])
        assert_ended(browser, "expired_idle", token)
        # A write with the dead cookie is refused and does not bring the
        # session back (tessera may have purged the record once it reported
        # the expiry, so the reason may now be "missing").
        stale = browser.post("/counter", headers={"cookie": f"__Host-session={token}"})
        assert stale.status_code == 401
        assert stale.json()["reason"] in ("expired_idle", "missing")
        again = browser.get("/whoami", headers={"cookie": f"__Host-session={token}"})
        assert again.status_code == 401


@pytest.mark.parametrize("kind", KINDS)
def test_absolute_expiry_ends_an_active_session_with_its_reason(
    short_absolute: TesseraServer, kind: str
) -> None:
    with running_app(kind, config_for(short_absolute)) as app:
        browser = Browser(app)
        browser.login("alice")
        me = browser.get("/whoami").json()
        # Activity does not move the absolute deadline.
        assert browser.post("/counter").status_code == 200
        assert browser.get("/whoami").json()["absolute_expires_at"] == me["absolute_expires_at"]
        wait_past(me["absolute_expires_at"])
        assert_ended(browser, "expired_absolute")


@pytest.fixture(scope="module")
def touchy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TesseraServer]:
    server = start_tessera(
        Path(tmp_path_factory.mktemp("touch")),
        idle_timeout="6s",
        absolute_timeout="1h",
        touch_step="1s",
        sweep_interval="1h",
    )
    yield server
    server.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_status_polls_do_not_keep_a_session_alive(touchy: TesseraServer, kind: str) -> None:
    config = config_for(touchy, status_paths=frozenset({"/status"}))
    with running_app(kind, config) as app:
        browser = Browser(app)
        browser.login("alice")
        first = browser.get("/status").json()["idle_expires_at"]
        # Later than touch_step plus the deadline's one-second resolution.
        time.sleep(2.5)
        assert browser.get("/status").json()["idle_expires_at"] == first
        # A request that is not a status poll is activity: the deadline moves
        # (recorded once the app's status is known, before the response).
        assert browser.get("/whoami").status_code == 200
        assert browser.get("/status").json()["idle_expires_at"] > first


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_the_app_refuses_does_not_keep_a_session_alive(
    touchy: TesseraServer, kind: str
) -> None:
    config = config_for(touchy, status_paths=frozenset({"/status"}))
    with running_app(kind, config) as app:
        browser = Browser(app)
        browser.login("alice")
        first = browser.get("/status").json()["idle_expires_at"]
        time.sleep(2.5)
        # Signed in, but the app answers 404: not activity (as tessera's own
        # layer rules for any 4xx), the idle deadline stays.
        assert browser.get("/no-such-page").status_code == 404
        assert browser.get("/status").json()["idle_expires_at"] == first
        # A write is activity by itself.
        assert browser.post("/counter").status_code == 200
        assert browser.get("/status").json()["idle_expires_at"] > first


@pytest.fixture(scope="module")
def remembering(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TesseraServer]:
    server = start_tessera(
        Path(tmp_path_factory.mktemp("remember")),
        idle_timeout="10m",
        absolute_timeout="1h",
        remember_idle_timeout="1d",
        remember_absolute_timeout="30d",
    )
    yield server
    server.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_remember_gives_the_cookie_the_remember_lifetime(
    remembering: TesseraServer, tessera: TesseraServer, kind: str
) -> None:
    with running_app(kind, config_for(remembering)) as app:
        for remember, max_age in ((False, 3600), (True, 30 * 24 * 3600)):
            response = Browser(app).post("/login", json={"user": "alice", "remember": remember})
            assert response.status_code == 200, response.text
            [cookie] = response.headers.get_list("set-cookie")
            name, _, attrs = parse_set_cookie(cookie)
            assert name == "__Host-session"
            # Max-Age is the remaining absolute lifetime, in whole seconds.
            assert max_age - 5 <= int(attrs["max-age"]) <= max_age, cookie
    # A tessera without the remember class: 400, no new cookie.
    with running_app(kind, config_for(tessera)) as app:
        browser = Browser(app)
        browser.login("alice")
        before = browser.token
        refused = browser.post("/login", json={"user": "alice", "remember": True})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "remember_not_configured"
        assert refused.headers.get_list("set-cookie") == []
        assert (
            browser.get("/whoami", headers={"cookie": f"__Host-session={before}"}).status_code
            == 200
        )
