"""Fixtures: a real ``tessera serve`` and the test application served over a
real socket, once on the ASGI middleware (FastAPI under uvicorn) and once on
the WSGI middleware (Flask under werkzeug's threaded server)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps import Calls, make_django_app, make_fastapi_app, make_flask_app
from tessera_client import ClientConfig
from tessera_server import TesseraServer

KINDS = ["asgi", "wsgi", "django"]

# werkzeug's request lines would drown pytest's output.
logging.getLogger("werkzeug").setLevel(logging.ERROR)


@contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", backlog=256)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    server.request_queue_size = 256
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=30)
        server.server_close()


class App:
    """The test application of one kind, served over HTTP, plus a client that
    keeps the session cookie by hand (so tests see every ``Set-Cookie``)."""

    def __init__(self, kind: str, url: str, calls: Calls, config: ClientConfig) -> None:
        self.kind = kind
        self.url = url
        self.calls = calls
        self.config = config
        self.http = httpx.Client(base_url=url, timeout=30)

    def close(self) -> None:
        self.http.close()


@contextmanager
def running_app(kind: str, config: ClientConfig) -> Iterator[App]:
    calls = Calls()
    if kind == "asgi":
        serve: Callable[[Any], Any] = serve_asgi
        app = make_fastapi_app(config, calls)
    elif kind == "wsgi":
        serve = serve_wsgi
        app = make_flask_app(config, calls)
    else:
        serve = serve_wsgi
        app = make_django_app(config, calls)
    with serve(app) as url:
        running = App(kind, url, calls, config)
        try:
            yield running
        finally:
            running.close()


def start_tessera(tmp: Path, **settings: str) -> TesseraServer:
    return TesseraServer(tmp, **settings).start()


@pytest.fixture(scope="session")
def tessera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TesseraServer]:
    server = start_tessera(tmp_path_factory.mktemp("tessera"))
    yield server
    server.stop()


def config_for(server: TesseraServer, **overrides: Any) -> ClientConfig:
    return ClientConfig(url=server.url, api_key=server.api_key, **overrides)


@pytest.fixture(params=KINDS)
def app(request: pytest.FixtureRequest, tessera: TesseraServer) -> Iterator[App]:
    with running_app(request.param, config_for(tessera)) as running:
        yield running


def parse_set_cookie(value: str) -> tuple[str, str, dict[str, str]]:
    """``name=value; Attr=…; Flag`` → (name, value, {attr-lower: value})."""
    first, *rest = [part.strip() for part in value.split(";")]
    name, _, val = first.partition("=")
    attrs: dict[str, str] = {}
    for part in rest:
        key, _, attr_value = part.partition("=")
        attrs[key.lower()] = attr_value
    return name, val, attrs


class Browser:
    """A browser-like client of the test app: keeps the session cookie from
    ``Set-Cookie`` by hand and sends same-origin Fetch Metadata on unsafe
    requests unless told otherwise."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.cookies: dict[str, str] = {}
        self.csrf: str | None = None
        self.last_set_cookie: list[str] = []

    @property
    def token(self) -> str | None:
        return next(iter(self.cookies.values()), None)

    def request(
        self,
        method: str,
        path: str,
        *,
        csrf: bool = True,
        site: str | None = "same-origin",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if self.cookies:
            sent.setdefault("cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if method not in ("GET", "HEAD"):
            if site is not None:
                sent.setdefault("sec-fetch-site", site)
            if csrf and self.csrf:
                sent.setdefault("x-csrf-token", self.csrf)
        response = self.app.http.request(method, path, headers=sent, **kwargs)
        self.last_set_cookie = response.headers.get_list("set-cookie")
        for value in self.last_set_cookie:
            name, val, attrs = parse_set_cookie(value)
            if attrs.get("max-age") == "0" or not val:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = val
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
            if isinstance(body, dict) and body.get("csrf_token"):
                self.csrf = body["csrf_token"]
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def login(self, user: str = "alice") -> httpx.Response:
        response = self.post("/login", json={"user": user})
        assert response.status_code == 200, response.text
        return response


@pytest.fixture
def browser(app: App) -> Browser:
    return Browser(app)
