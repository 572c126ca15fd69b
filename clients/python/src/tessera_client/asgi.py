"""ASGI middleware (Starlette, FastAPI, any ASGI 3 app).

>>> from starlette.applications import Starlette
>>> from tessera_client import ClientConfig
>>> from tessera_client.asgi import TesseraMiddleware
>>> app = Starlette()
>>> config = ClientConfig(url="http://127.0.0.1:8080", api_key="tsk_example")
>>> app.add_middleware(TesseraMiddleware, config=config)

For each HTTP request the middleware makes one call to tessera
(``POST /v1/requests/check``) with what tessera's request guard needs, then:

- **refused** (cross-site, foreign ``Origin``, missing or wrong CSRF token on
  an unsafe request): answers 403 ``{"error": "csrf_rejected", "reason": …}``
  itself; the application never runs;
- **session** / **no session**: runs the application with an
  :class:`~tessera_client.session.AsyncSession` in ``scope["tessera.session"]``
  (``session_from(request)``; with FastAPI, the ``TesseraSession``
  dependency), and adds the ``Set-Cookie`` values tessera asked for to the
  response;
- **tessera unreachable**, slow past ``timeout``, or answering 5xx: 503
  ``{"error": "unavailable"}``, fail closed — the application never runs
  without a decision (ASVS 5.0 V7.2.1).

A :class:`~tessera_client.errors.TesseraError` raised by the application
(``SessionEnded`` from a route that needs a user, ``TesseraUnavailable``
from a write) becomes its JSON answer, if the response has not started.

WebSocket connections are passed through without a session: check them in
the application (their handshake is a GET, so a cookie check alone would not
stop cross-site WebSocket hijacking; compare ``Origin``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .client import AsyncTesseraClient
from .config import ClientConfig
from .errors import InvalidInput, TesseraError
from .facts import RequestFacts, facts_from_headers, form_csrf_token, is_form
from .responses import SESSION_KEY, cookie_headers, error_parts, refusal, session_from
from .session import AsyncSession

log = logging.getLogger("tessera_client")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["AsyncSession", "TesseraMiddleware", "session_from"]


class TesseraMiddleware:
    """Gives every HTTP request a tessera session; see the module docs.

    Pass ``config`` (or a ready ``client`` to share one connection pool).
    The client's connections are closed at ASGI lifespan shutdown.
    """

    def __init__(
        self,
        app: ASGIApp,
        config: ClientConfig | None = None,
        client: AsyncTesseraClient | None = None,
    ) -> None:
        if client is None:
            if config is None:
                raise TypeError("TesseraMiddleware needs config= or client=")
            client = AsyncTesseraClient(config)
        self.app = app
        self.client = client
        self.config = client.config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_on_shutdown(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        client_addr = scope.get("client")
        facts = facts_from_headers(
            scope["method"], list(scope.get("headers", [])), client_addr[0] if client_addr else None
        )
        if not self.config.accept_bearer:
            facts.authorization = []
        try:
            receive = await self._read_form_token(scope, facts, receive)
            status_query = scope.get("path") in self.config.status_paths
            # The touch waits for the application's status: tessera only
            # says whether one is due (touch_due).
            decision = await self.client.check(facts, False)
        except TesseraError as err:
            await _send_error(send, err)
            return
        if decision.outcome == "refused":
            await _send_error(send, refusal(decision), decision.set_cookie)
            return

        session = AsyncSession(self.client, decision, facts)
        if status_query:
            session._touch_due = False
        scope[SESSION_KEY] = session
        started = False

        async def send_with_cookies(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # The application's status is known now: record the
                # activity before the response goes out (only when due).
                await self._touch_after(session, int(message["status"]))
                headers = list(message.get("headers", []))
                existing = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
                clear = session.signed_out and self.config.clear_site_data_on_logout
                for name, value in cookie_headers(session.set_cookie, existing, clear):
                    headers.append((name.encode(), value.encode("latin-1")))
                message = {**message, "headers": headers}
                session.headers_sent = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookies)
        except TesseraError as err:
            if started:
                raise
            await _send_error(send, err, session.set_cookie)

    async def _touch_after(self, session: AsyncSession, status: int) -> None:
        """Records the request as activity once its status is known (see
        ``_State._touch_token``). A failure only means the idle deadline did
        not move this time: logged, never raised."""
        token = session._touch_token(status)
        if token is None:
            return
        try:
            await self.client.touch(token)
        except TesseraError:
            log.warning("tessera: activity not recorded (the session service did not answer)")

    async def _read_form_token(
        self, scope: Scope, facts: RequestFacts, receive: Receive
    ) -> Receive:
        """For an unsafe url-encoded form with a cookie and no CSRF header,
        reads the body (up to ``form_limit``) to find its ``csrf_token``
        field, and returns a ``receive`` that hands the same body on."""
        if not (facts.is_unsafe and facts.cookies and facts.csrf_token is None):
            return receive
        content_type = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"content-type"), None
        )
        if not is_form(content_type):
            return receive
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away: the app sees the disconnect.
                return _replay(message, receive)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.config.form_limit:
                raise InvalidInput(413, "payload_too_large", message="form body over the limit")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        facts.csrf_token = form_csrf_token(body)
        return _replay({"type": "http.request", "body": body, "more_body": False}, receive)

    def _closing_on_shutdown(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.client.aclose()
            await send(message)

        return wrapped


def _replay(first: Message, receive: Receive) -> Receive:
    """A ``receive`` that yields ``first`` once, then defers to the server's."""
    pending: list[Message] = [first]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


async def _send_error(send: Send, err: TesseraError, set_cookie: list[str] | None = None) -> None:
    status, headers, body = error_parts(err, set_cookie)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode(), v.encode("latin-1")) for k, v in headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
