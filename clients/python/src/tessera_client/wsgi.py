"""WSGI middleware (Flask, Django, any WSGI app).

>>> from tessera_client import ClientConfig
>>> from tessera_client.wsgi import TesseraMiddleware
>>> def app(environ, start_response):
...     start_response("200 OK", [("content-type", "text/plain")])
...     return [b"hello"]
>>> app = TesseraMiddleware(app, ClientConfig(url="http://127.0.0.1:8080", api_key="tsk_example"))

The same rules as the ASGI middleware (:mod:`tessera_client.asgi`): one
``POST /v1/requests/check`` per request; a refused request gets 403 and
never reaches the application; tessera unreachable, too slow or failing is
503 (fail closed); otherwise the application runs with a
:class:`~tessera_client.session.Session` in ``environ["tessera.session"]``
(``session_from(request)``; with Flask, :func:`tessera_client.flask.current_session`)
and the ``Set-Cookie`` values tessera asked for are added to its response.

With Django, wrap the WSGI application in ``wsgi.py``
(``application = TesseraMiddleware(get_wsgi_application(), config)``) and
read the session with ``session_from(request)`` (it looks in
``request.META``).
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from .client import TesseraClient
from .config import ClientConfig
from .errors import InvalidInput, TesseraError
from .facts import RequestFacts, facts_from_headers, form_csrf_token, is_form
from .responses import (
    SESSION_KEY,
    cookie_headers,
    error_parts,
    refusal,
    session_from,
    status_line,
)
from .session import Session

log = logging.getLogger("tessera_client")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

__all__ = ["Session", "TesseraMiddleware", "session_from"]

#: WSGI environ keys of the request headers tessera needs.
_HEADERS = {
    "HTTP_COOKIE": b"cookie",
    "HTTP_AUTHORIZATION": b"authorization",
    "HTTP_ORIGIN": b"origin",
    "HTTP_SEC_FETCH_SITE": b"sec-fetch-site",
    "HTTP_HOST": b"host",
    "HTTP_X_CSRF_TOKEN": b"x-csrf-token",
    "HTTP_USER_AGENT": b"user-agent",
}


class TesseraMiddleware:
    """Gives every request a tessera session; see the module docs.

    Pass ``config`` (or a ready ``client`` to share one connection pool).
    """

    def __init__(
        self,
        app: WSGIApp,
        config: ClientConfig | None = None,
        client: TesseraClient | None = None,
    ) -> None:
        if client is None:
            if config is None:
                raise TypeError("TesseraMiddleware needs config= or client=")
            client = TesseraClient(config)
        self.app = app
        self.client = client
        self.config = client.config

    def close(self) -> None:
        """Closes the connections to tessera."""
        self.client.close()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        # WSGI gives header values as latin-1 decoded str (PEP 3333); back to
        # the bytes on the wire for the same checks as under ASGI.
        headers = [
            (name, environ[key].encode("latin-1"))
            for key, name in _HEADERS.items()
            if key in environ
        ]
        facts = facts_from_headers(
            environ.get("REQUEST_METHOD", "GET"), headers, environ.get("REMOTE_ADDR")
        )
        if not self.config.accept_bearer:
            facts.authorization = []
        try:
            self._read_form_token(environ, facts)
            status_query = environ.get("PATH_INFO") in self.config.status_paths
            # The touch waits for the application's status: tessera only
            # says whether one is due (touch_due).
            decision = self.client.check(facts, False)
        except TesseraError as err:
            return _error(start_response, err)
        if decision.outcome == "refused":
            return _error(start_response, refusal(decision), decision.set_cookie)

        session = Session(self.client, decision, facts)
        if status_query:
            session._touch_due = False
        environ[SESSION_KEY] = session

        def start_with_cookies(
            status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            clear = session.signed_out and self.config.clear_site_data_on_logout
            extra = cookie_headers(session.set_cookie, response_headers, clear)
            # The application's status is known now: record the activity
            # before the response goes out (only when due).
            self._touch_after(session, int(status.split(" ", 1)[0]))
            session.headers_sent = True
            return start_response(status, list(response_headers) + extra, exc_info)

        try:
            return self.app(environ, start_with_cookies)
        except TesseraError as err:
            return _error(start_response, err, session.set_cookie, sys.exc_info())

    def _touch_after(self, session: Session, status: int) -> None:
        """Records the request as activity once its status is known (see
        ``_State._touch_token``). A failure only means the idle deadline did
        not move this time: logged, never raised."""
        token = session._touch_token(status)
        if token is None:
            return
        try:
            self.client.touch(token)
        except TesseraError:
            log.warning("tessera: activity not recorded (the session service did not answer)")

    def _read_form_token(self, environ: dict[str, Any], facts: RequestFacts) -> None:
        """For an unsafe url-encoded form with a cookie and no CSRF header,
        reads the body (up to ``form_limit``) to find its ``csrf_token``
        field and puts the same bytes back for the application."""
        if not (facts.is_unsafe and facts.cookies and facts.csrf_token is None):
            return
        if not is_form(environ.get("CONTENT_TYPE")):
            return
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise InvalidInput(400, "invalid_request", message="bad Content-Length") from None
        if length > self.config.form_limit:
            raise InvalidInput(413, "payload_too_large", message="form body over the limit")
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        facts.csrf_token = form_csrf_token(body)


def _error(
    start_response: StartResponse,
    err: TesseraError,
    set_cookie: list[str] | None = None,
    exc_info: Any = None,
) -> list[bytes]:
    status, headers, body = error_parts(err, set_cookie)
    start_response(status_line(status), headers, exc_info)
    return [body]
