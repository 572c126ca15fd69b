"""login/rotate/logout after the response headers went out are refused
before tessera is called: the session is unchanged and the browser's cookie
still works."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

import pytest

from conftest import config_for, parse_set_cookie, serve_asgi, serve_wsgi
from tessera_client.asgi import TesseraMiddleware as AsgiMiddleware
from tessera_client.wsgi import TesseraMiddleware as WsgiMiddleware
from tessera_server import TesseraServer
from test_session_lifecycle import token_is_live

PLAIN = [(b"content-type", b"text/plain")]


async def asgi_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    session = scope["tessera.session"]
    if scope["path"] == "/login":
        await session.login("alice")
        await send({"type": "http.response.start", "status": 200, "headers": PLAIN})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": PLAIN})
    try:
        await (session.rotate() if scope["path"] == "/rotate" else session.logout())
        outcome = b"changed"
    except RuntimeError:
        outcome = b"refused"
    await send({"type": "http.response.body", "body": outcome})


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    session = environ["tessera.session"]
    plain = [("content-type", "text/plain")]
    if environ["PATH_INFO"] == "/login":
        session.login("alice")
        start_response("200 OK", plain)
        return [b"ok"]
    start_response("200 OK", plain)
    try:
        if environ["PATH_INFO"] == "/rotate":
            session.rotate()
        else:
            session.logout()
        outcome = b"changed"
    except RuntimeError:
        outcome = b"refused"
    return [outcome]


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
@pytest.mark.parametrize("path", ["/rotate", "/logout"])
def test_cookie_change_after_headers_is_refused(
    tessera: TesseraServer, kind: str, path: str
) -> None:
    import httpx

    config = config_for(tessera)
    app: Any = (
        AsgiMiddleware(asgi_app, config) if kind == "asgi" else WsgiMiddleware(wsgi_app, config)
    )
    serve: Any = serve_asgi if kind == "asgi" else serve_wsgi
    with serve(app) as url, httpx.Client(base_url=url) as http:
        login = http.get("/login")
        assert login.text == "ok"
        _, token, _ = parse_set_cookie(login.headers["set-cookie"])
        # The app has its CSRF-free GET routes: a GET needs no token.
        late = http.get(path, headers={"cookie": f"__Host-session={token}"})
        assert late.text == "refused"
        assert late.headers.get_list("set-cookie") == []
        assert token_is_live(tessera, token)
