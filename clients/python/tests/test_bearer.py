"""Bearer session tokens (API clients): accepted only when the app opts in;
then they need no CSRF token (a browser never attaches them by itself) and
get no cookie."""

from __future__ import annotations

import pytest

from conftest import KINDS, Browser, config_for, running_app
from tessera_server import TesseraServer


def signed_in_token(browser: Browser) -> str:
    browser.login("alice")
    assert browser.token is not None
    return browser.token


@pytest.mark.parametrize("kind", KINDS)
def test_bearer_token_is_accepted_when_enabled(tessera: TesseraServer, kind: str) -> None:
    with running_app(kind, config_for(tessera, accept_bearer=True)) as app:
        token = signed_in_token(Browser(app))
        bearer = {"authorization": f"Bearer {token}"}
        me = app.http.get("/whoami", headers=bearer)
        assert me.status_code == 200
        assert me.json()["user"] == "alice"
        # An unsafe request without a CSRF token, even marked cross-site:
        # the bearer token is no ambient authority.
        bumped = app.http.post("/counter", headers={**bearer, "sec-fetch-site": "cross-site"})
        assert bumped.status_code == 200, bumped.text
        assert bumped.json() == {"count": 1}
        assert bumped.headers.get_list("set-cookie") == []


@pytest.mark.parametrize("kind", KINDS)
def test_bearer_token_is_ignored_by_default(tessera: TesseraServer, kind: str) -> None:
    with running_app(kind, config_for(tessera)) as app:
        token = signed_in_token(Browser(app))
        response = app.http.get("/whoami", headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert (
            app.http.post("/counter", headers={"authorization": f"Bearer {token}"}).status_code
            == 401
        )
