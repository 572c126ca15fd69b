"""No secret reaches a log line or a repr: session tokens, CSRF tokens and
the API key stay out of everything the client logs, at every level, through
a whole sign-in / update / rotate / sign-out / failure cycle."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from conftest import KINDS, Browser, config_for, running_app, start_tessera


@pytest.mark.parametrize("kind", KINDS)
def test_no_secret_in_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    server = start_tessera(tmp_path)
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = [server.api_key]
    try:
        with running_app(kind, config_for(server)) as app:
            browser = Browser(app)
            browser.login("alice")
            secrets += [browser.token or "", browser.csrf or ""]
            assert browser.post("/counter").status_code == 200
            assert browser.post("/rotate").status_code == 200
            secrets += [browser.token or "", browser.csrf or ""]
            assert browser.post("/logout").status_code == 200
            server.stop()
            assert browser.get("/whoami").status_code == 503
    finally:
        server.stop()
    assert all(secrets)
    # The test's own HTTP client plays the browser: httpcore logs the
    # Set-Cookie headers it receives (the token, by design of a cookie). Its
    # records come from this thread; everything the middleware and its
    # client log comes from the servers' threads.
    here = threading.get_ident()
    logged = "\n".join(
        r.getMessage() + repr(r.args)
        for r in caplog.records
        if not (r.thread == here and r.name.startswith(("httpx", "httpcore")))
    )
    # The middleware's own calls to tessera were logged (and examined).
    assert "/v1/requests/check" in logged
    assert "tessera unreachable" in logged
    for secret in secrets:
        assert secret not in logged
