"""One FastAPI app driven by several event loops in turn (Starlette's
TestClient starts a loop per ``with`` block, as application test suites
do): every loop gets working connections to tessera."""

from __future__ import annotations

import warnings

from apps import Calls, make_fastapi_app
from conftest import config_for
from tessera_server import TesseraServer

with warnings.catch_warnings():
    # Starlette announces a successor of httpx for its TestClient at import.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def test_the_app_works_from_one_event_loop_to_the_next(tessera: TesseraServer) -> None:
    app = make_fastapi_app(config_for(tessera), Calls())
    for user in ("alice", "bob", "carol"):
        with TestClient(app, base_url="https://testserver") as client:
            login = client.post(
                "/login", json={"user": user}, headers={"sec-fetch-site": "same-origin"}
            )
            assert login.status_code == 200, login.text
            whoami = client.get("/whoami")
            assert whoami.status_code == 200, whoami.text
            assert whoami.json()["user"] == user
