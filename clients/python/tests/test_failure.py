"""Fail closed: when tessera cannot answer, requests get 503 and never reach
the application — not as anonymous, not as the last known user."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import KINDS, Browser, config_for, running_app, start_tessera
from tessera_client import ClientConfig


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("kind", KINDS)
def test_tessera_down_is_503_not_a_pass_through(tmp_path: Path, kind: str) -> None:
    server = start_tessera(tmp_path)
    try:
        with running_app(kind, config_for(server)) as app:
            browser = Browser(app)
            browser.login("alice")
            assert browser.get("/whoami").status_code == 200
            server.stop()
            for method, path in (("GET", "/whoami"), ("POST", "/counter"), ("POST", "/login")):
                before = len(app.calls.seen)
                response = browser.request(method, path, json={"user": "bob"})
                assert response.status_code == 503, response.text
                assert response.json()["error"] == "unavailable"
                assert response.headers["retry-after"] == "1"
                # The handler never ran, and no cookie was changed.
                assert len(app.calls.seen) == before
                assert browser.last_set_cookie == []
    finally:
        server.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_tessera_never_started_is_503(kind: str) -> None:
    config = ClientConfig(url=f"http://127.0.0.1:{closed_port()}", api_key="tsk_unused", timeout=2)
    with running_app(kind, config) as app:
        response = app.http.get("/whoami")
        assert response.status_code == 503
        assert response.json() == {
            "error": "unavailable",
            "message": "the session service is not available; try again",
        }
        assert app.calls.seen == []


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_api_key_is_503_with_a_clear_message(
    tessera_url_with_bad_key: ClientConfig, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with running_app(kind, tessera_url_with_bad_key) as app:
        response = app.http.get("/whoami")
        assert response.status_code == 503
        assert "API key" in response.json()["message"]
        assert app.calls.seen == []
    # The operator learns why from the log, without the key in it.
    logged = [r.getMessage() for r in caplog.records if r.name == "tessera_client"]
    assert any("API key" in line for line in logged)
    assert not any(tessera_url_with_bad_key.api_key in line for line in logged)


@pytest.fixture
def tessera_url_with_bad_key(tessera: object) -> ClientConfig:
    from tessera_server import TesseraServer

    assert isinstance(tessera, TesseraServer)
    return ClientConfig(url=tessera.url, api_key="tsk_" + "A" * 43)


class _Broken(BaseHTTPRequestHandler):
    """Stands where tessera should be and misbehaves: ``html`` answers a 200
    HTML page (a proxy's login page), ``gateway`` a 502, ``unknown`` JSON
    with an outcome this client does not know."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.server.mode == "html":  # type: ignore[attr-defined]
            body, status, kind = b"<html>proxy login</html>", 200, "text/html"
        elif self.server.mode == "unknown":  # type: ignore[attr-defined]
            # Valid JSON, but no outcome this client knows: never a pass.
            body, status, kind = b'{"outcome": "allow", "set_cookie": []}', 200, "application/json"
        else:
            body, status, kind = b'{"error": "bad gateway"}', 502, "application/json"
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["html", "gateway", "unknown"])
def test_an_answer_that_is_not_tesseras_is_503(kind: str, mode: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    server.mode = mode  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = ClientConfig(url=f"http://127.0.0.1:{server.server_port}", api_key="tsk_unused")
        with running_app(kind, config) as app:
            response = app.http.post(
                "/counter",
                headers={"cookie": "__Host-session=tss_x", "sec-fetch-site": "same-origin"},
            )
            assert response.status_code == 503
            assert response.json()["error"] == "unavailable"
            assert app.calls.seen == []
    finally:
        server.shutdown()
        server.server_close()
