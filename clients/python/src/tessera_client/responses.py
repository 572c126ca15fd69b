"""The responses the middleware writes itself (refusals and failures), and
the headers it adds to the application's responses. Shared by the ASGI and
WSGI middleware."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from .errors import CsrfRejected, TesseraError
from .wire import Decision

#: Key under which the middleware stores the session: in the ASGI scope and
#: the WSGI environ alike.
SESSION_KEY = "tessera.session"


def error_parts(
    err: TesseraError, set_cookie: list[str] | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of an error answer, in tessera's JSON error
    shape. ``no-store``: an error about one user's session must not be
    cached for another.

    >>> from tessera_client.errors import TesseraUnavailable
    >>> status, headers, body = error_parts(TesseraUnavailable())
    >>> status, json.loads(body)["error"]
    (503, 'unavailable')
    """
    body = json.dumps(err.body()).encode()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
    ]
    if err.status == 503:
        # A short, explicit retry hint: the failure is expected to pass.
        headers.append(("retry-after", "1"))
    headers.extend(("set-cookie", value) for value in set_cookie or [])
    return err.status, headers, body


def refusal(decision: Decision) -> TesseraError:
    """The answer to a request tessera's guard refused: its status (403)
    and reason; the application never runs (OWASP CSRF Prevention Cheat
    Sheet)."""
    err = CsrfRejected(decision.reason or "csrf_rejected")
    if decision.status is not None and 400 <= decision.status < 500:
        err.status = decision.status
    return err


def status_line(status: int) -> str:
    """``"503 Service Unavailable"`` for WSGI."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


def cookie_headers(
    set_cookie: list[str], existing: list[tuple[str, str]], clear_site_data: bool = False
) -> list[tuple[str, str]]:
    """Headers to add to a response that carries ``set_cookie``: the cookies,
    and ``Cache-Control: no-store`` unless the app chose a cache policy — a
    response installing a session token must never be stored by a shared
    cache (OWASP Session Management Cheat Sheet, "Web Content Caching").
    With ``clear_site_data`` (a sign-out), also ``Clear-Site-Data:
    "cookies"``.

    >>> cookie_headers(["s=v"], [("Cache-Control", "private")])
    [('set-cookie', 's=v')]
    """
    if not set_cookie:
        return []
    added = [("set-cookie", value) for value in set_cookie]
    if not any(name.lower() == "cache-control" for name, _ in existing):
        added.append(("cache-control", "no-store"))
    if clear_site_data:
        added.append(("clear-site-data", '"cookies"'))
    return added


def session_from(request: Any) -> Any:
    """The session the middleware attached to a request: pass an ASGI scope,
    a WSGI environ, or a framework request wrapping either (Starlette/FastAPI
    ``Request``, Flask/Werkzeug ``request``, Django ``request.META``).

    Raises :class:`RuntimeError` when the middleware is not installed, so a
    missing middleware is found at the first request, not in production.
    """
    for attr in ("scope", "environ", "META"):
        inner = getattr(request, attr, None)
        if isinstance(inner, dict):
            request = inner
            break
    if isinstance(request, dict) and SESSION_KEY in request:
        return request[SESSION_KEY]
    raise RuntimeError(
        "no tessera session on this request: is tessera_client's middleware installed?"
    )
