"""HTTP clients for tessera's ``/v1`` API: :class:`TesseraClient` (blocking,
for WSGI) and :class:`AsyncTesseraClient` (asyncio, for ASGI).

Each holds one ``httpx`` connection pool for its lifetime, so requests reuse
kept-alive connections to tessera. Both share every request and answer
format with :mod:`tessera_client.wire`; they differ only in how they wait.

Failure rule: a transport error, a timeout, a 5xx or an answer that is not
tessera's raises :class:`~tessera_client.errors.TesseraUnavailable`; the
middleware turns it into a 503. Nothing is ever guessed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from . import wire
from .config import ClientConfig
from .errors import TesseraUnavailable
from .facts import RequestFacts
from .wire import Decision, Issued, SessionView, Updated

log = logging.getLogger("tessera_client")


def _httpx_options(config: ClientConfig) -> dict[str, Any]:
    return {
        "base_url": config.url.rstrip("/"),
        "headers": {"authorization": f"Bearer {config.api_key}"},
        "timeout": httpx.Timeout(config.timeout),
        "limits": httpx.Limits(
            max_connections=config.max_connections,
            max_keepalive_connections=config.max_connections,
            # Idle connections are let go after 4 s, before tessera drops
            # them (its header_read_timeout is 10 s); one the other side
            # closed anyway is seen as closed before reuse and replaced.
            keepalive_expiry=4.0,
        ),
        # tessera's answers are never redirects; following one could send
        # the API key elsewhere.
        "follow_redirects": False,
    }


def _unreachable(call: wire.Call, err: Exception) -> TesseraUnavailable:
    # The exception type and the path only: no URL credentials, no body.
    log.error("tessera unreachable: %s %s failed: %s", call.method, call.path, type(err).__name__)
    return TesseraUnavailable()


class TesseraClient:
    """Blocking client. Thread-safe; share one per process.

    >>> from tessera_client import ClientConfig, TesseraClient
    >>> client = TesseraClient(ClientConfig(url="http://127.0.0.1:8080", api_key="tsk_example"))
    >>> client.close()
    """

    def __init__(self, config: ClientConfig, http: httpx.Client | None = None) -> None:
        self.config = config
        self._http = http or httpx.Client(**_httpx_options(config))

    def close(self) -> None:
        """Closes the connection pool."""
        self._http.close()

    def __enter__(self) -> TesseraClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: wire.Call) -> httpx.Response:
        try:
            return self._http.request(call.method, call.path, json=call.body)
        except httpx.HTTPError as err:
            raise _unreachable(call, err) from None

    def check(self, facts: RequestFacts, touch: bool = True) -> Decision:
        """Asks tessera what to do with an incoming request: run the
        CSRF/origin guard, find and load its session."""
        return wire.check_answer(self._send(wire.check_call(facts, touch)))

    def login(
        self,
        user_id: str,
        token: str | None,
        ip: str | None = None,
        user_agent: str | None = None,
        remember: bool = False,
    ) -> Issued:
        """A new signed-in session for ``user_id``; the session of ``token``
        (if any) stops working."""
        return wire.issued_answer(
            self._send(wire.login_call(user_id, token, ip, user_agent, remember))
        )

    def rotate(self, token: str) -> Issued:
        """A new token for the same session; the old one dies at once."""
        return wire.issued_answer(self._send(wire.rotate_call(token)))

    def logout(self, token: str | None) -> list[str]:
        """Ends the session (if any); returns the ``Set-Cookie`` values that
        clear the cookie."""
        return wire.signed_out_answer(self._send(wire.logout_call(token)))

    def patch_data(self, token: str, set: dict[str, Any], remove: list[str]) -> SessionView:
        """Sets and removes keys atomically, onto the latest stored data."""
        return wire.written_answer(self._send(wire.patch_call(token, set, remove))).session

    def compare_and_set(self, token: str, key: str, current: Any, new: Any) -> Updated:
        """Writes ``new`` to ``key`` only if it still holds ``current``
        (``None`` = absent); says whether it did, with the stored session."""
        return wire.cas_answer(self._send(wire.cas_call(token, key, current, new)))

    def touch(self, token: str) -> None:
        """Counts the session of ``token`` as active now (the touch the
        middleware defers until the application answered)."""
        wire.check_answer(self._send(wire.touch_call(token)))


class AsyncTesseraClient:
    """asyncio client. Share one per process.

    Connections belong to the event loop that opened them, so the pool is
    opened per loop: an app served by one loop uses one pool, and an app
    driven by several loops in turn (Starlette's ``TestClient`` starts one
    per ``with`` block) gets a fresh pool in each instead of failing on
    connections of a closed loop.

    >>> import asyncio
    >>> from tessera_client import AsyncTesseraClient, ClientConfig
    >>> config = ClientConfig(url="http://127.0.0.1:8080", api_key="tsk_example")
    >>> client = AsyncTesseraClient(config)
    >>> asyncio.run(client.aclose())
    """

    def __init__(self, config: ClientConfig, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        # A pool given by the caller is theirs to manage and always used.
        self._given = http
        self._pools: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def _pool(self) -> httpx.AsyncClient:
        if self._given is not None:
            return self._given
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            # Pools of loops that have ended cannot be closed any more (their
            # sockets went with the loop); forget them.
            self._pools = {lp: p for lp, p in self._pools.items() if not lp.is_closed()}
            pool = self._pools[loop] = httpx.AsyncClient(**_httpx_options(self.config))
        return pool

    async def aclose(self) -> None:
        """Closes the connection pool of the running loop."""
        if self._given is not None:
            await self._given.aclose()
            return
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.aclose()

    async def __aenter__(self) -> AsyncTesseraClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, call: wire.Call) -> httpx.Response:
        try:
            return await self._pool().request(call.method, call.path, json=call.body)
        except httpx.HTTPError as err:
            raise _unreachable(call, err) from None

    async def check(self, facts: RequestFacts, touch: bool = True) -> Decision:
        """Asks tessera what to do with an incoming request."""
        return wire.check_answer(await self._send(wire.check_call(facts, touch)))

    async def login(
        self,
        user_id: str,
        token: str | None,
        ip: str | None = None,
        user_agent: str | None = None,
        remember: bool = False,
    ) -> Issued:
        """A new signed-in session for ``user_id``; the session of ``token``
        (if any) stops working."""
        call = wire.login_call(user_id, token, ip, user_agent, remember)
        return wire.issued_answer(await self._send(call))

    async def rotate(self, token: str) -> Issued:
        """A new token for the same session; the old one dies at once."""
        return wire.issued_answer(await self._send(wire.rotate_call(token)))

    async def logout(self, token: str | None) -> list[str]:
        """Ends the session (if any); returns the clearing ``Set-Cookie``."""
        return wire.signed_out_answer(await self._send(wire.logout_call(token)))

    async def patch_data(self, token: str, set: dict[str, Any], remove: list[str]) -> SessionView:
        """Sets and removes keys atomically, onto the latest stored data."""
        return wire.written_answer(await self._send(wire.patch_call(token, set, remove))).session

    async def compare_and_set(self, token: str, key: str, current: Any, new: Any) -> Updated:
        """Writes ``new`` to ``key`` only if it still holds ``current``."""
        return wire.cas_answer(await self._send(wire.cas_call(token, key, current, new)))

    async def touch(self, token: str) -> None:
        """Counts the session of ``token`` as active now (the touch the
        middleware defers until the application answered)."""
        wire.check_answer(await self._send(wire.touch_call(token)))
