"""The session a request handler sees: :class:`Session` under the WSGI
middleware (blocking calls), :class:`AsyncSession` under the ASGI middleware
(``await`` the calls that reach tessera).

Reads (``user``, ``get``, ``data``, ``expires_at``, ``csrf_token()``) use
what tessera answered when the request came in and cost nothing. Writes go
to tessera at once:

- ``set``/``remove`` are one request check carrying the change (``patch``,
  clients/PROTOCOL.md), applied onto the latest stored data, so concurrent
  requests changing other keys never lose each other's writes;
- ``update(key, fn)`` is a read-modify-write of one key that loses nothing
  under concurrency: a compare-and-set on the key's value, retried on
  conflict;
- ``login(user_id)`` issues a new token and kills the one the request
  came with (session fixation: ASVS 5.0 V7.2.4, OWASP
  Session Management Cheat Sheet "Renew the Session ID After Any Privilege
  Level Change");
- ``rotate()`` replaces the token of the same session;
- ``logout()`` deletes the session and clears the cookie.

The ``Set-Cookie`` these produce is added to the response by the
middleware, which is why they must be called before the response starts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from .client import AsyncTesseraClient, TesseraClient
from .errors import SessionEnded, TesseraError
from .facts import RequestFacts
from .wire import Decision, Issued, SessionView, Updated

#: An update function: the key's current value (``None`` when absent) to
#: its new value.
Updater = Callable[[Any], Any]


class _State:
    """What both kinds of session hold; no I/O here."""

    def __init__(self, decision: Decision, facts: RequestFacts) -> None:
        self._view: SessionView | None = decision.session
        self._token: str | None = decision.token
        presented = bool(facts.cookies or facts.authorization)
        self._end_reason: str | None = decision.end_reason if presented else None
        self._facts = facts
        #: ``Set-Cookie`` values for the response. Each install or clearing
        #: replaces the earlier ones: only the last state of the session
        #: reaches the browser.
        self.set_cookie: list[str] = list(decision.set_cookie)
        #: tessera said counting this request as activity would move the
        #: idle deadline; the middleware records it once the application
        #: answered below 400 (see :meth:`_touch_token`).
        self._touch_due = decision.touch_due
        #: Set by the middleware when the response headers have gone out.
        self.headers_sent = False
        #: True after ``logout()``: the middleware may add Clear-Site-Data.
        self.signed_out = False

    # -- reads ---------------------------------------------------------------

    @property
    def is_authenticated(self) -> bool:
        """True when the request has a live session of a signed-in user."""
        return self._view is not None and self._view.user_id is not None

    @property
    def user(self) -> str | None:
        """The signed-in user's id, or ``None``."""
        return self._view.user_id if self._view else None

    @property
    def handle(self) -> str | None:
        """The session's public handle (``tsh_…``): safe to log and show."""
        return self._view.handle if self._view else None

    @property
    def data(self) -> Mapping[str, Any]:
        """The session data (read-only; change it with ``set``/``update``)."""
        return MappingProxyType(self._view.data if self._view else {})

    def get(self, key: str, default: Any = None) -> Any:
        """One data value, or ``default``."""
        return self._view.data.get(key, default) if self._view else default

    @property
    def expires_at(self) -> datetime | None:
        """When the session ends if nothing more happens: the earlier of the
        idle and absolute deadlines. tessera enforces both at every request
        (ASVS 5.0 V7.3.1, V7.3.2); this is for a page to warn before it
        happens."""
        if self._view is None:
            return None
        return min(self._view.idle_expires_at, self._view.absolute_expires_at)

    @property
    def idle_expires_at(self) -> datetime | None:
        """The idle deadline: activity moves it."""
        return self._view.idle_expires_at if self._view else None

    @property
    def absolute_expires_at(self) -> datetime | None:
        """The absolute deadline: only a new sign-in moves it."""
        return self._view.absolute_expires_at if self._view else None

    @property
    def end_reason(self) -> str | None:
        """Why the request has no live session although it presented one:
        ``expired_idle``, ``expired_absolute``, ``missing``, … — an open set
        (tessera may add reasons such as ``revoked``): treat unknown values
        like ``missing``. ``None`` when the session is live or the request
        presented none."""
        return self._end_reason

    def csrf_token(self) -> str | None:
        """The CSRF token to put in forms (``csrf_token`` field) or send as
        ``X-CSRF-Token`` on unsafe requests. Masked afresh by tessera, so its
        bytes differ between renders (BREACH; OWASP CSRF Prevention Cheat
        Sheet), and every mask of the session's secret is accepted."""
        return self._view.csrf_token if self._view else None

    def __repr__(self) -> str:
        # Never the token or the CSRF token: a session may be logged.
        return f"<{type(self).__name__} user={self.user!r} handle={self.handle!r}>"

    # -- state changes -------------------------------------------------------

    def _require_token(self) -> str:
        if self._token is None or self._view is None:
            # A write needs a session: 401 with the reason it is gone.
            raise SessionEnded(self._end_reason or "missing")
        return self._token

    def _before_cookie_change(self) -> None:
        """Refuses a sign-in, rotation or sign-out once the response headers
        are sent: tessera would replace or end the session, but the browser
        would never get the new cookie (or the clearing one) — the user
        would be signed out by a dead token, or keep a cookie for a session
        that is gone. Checked before tessera is called, so nothing changes."""
        if self.headers_sent:
            raise RuntimeError(
                "the response has already started: call login(), rotate() and logout() "
                "before sending the response, so its Set-Cookie can go with it"
            )

    def _touch_token(self, status: int) -> str | None:
        """The token to record activity for after a response with
        ``status``, or ``None``. A request the application refused (4xx) is
        not activity, so failed attempts cannot keep a session alive (OWASP
        Session Management Cheat Sheet, idle timeout; tessera's own layer
        does the same); nor is one after which a write already moved the
        deadline."""
        if not self._touch_due or self._token is None or status >= 400:
            return None
        self._touch_due = False
        return self._token

    def _installed(self, issued: Issued) -> None:
        self._touch_due = False
        self.signed_out = False
        self._token = issued.token
        self._view = issued.session
        self._end_reason = None
        self.set_cookie = list(issued.set_cookie)

    def _signed_out(self, cookies: list[str]) -> None:
        self._touch_due = False
        self.signed_out = True
        self._token = None
        self._view = None
        self._end_reason = None
        self.set_cookie = list(cookies)

    def _failed(self, err: TesseraError) -> None:
        """tessera says the session is gone: forget it."""
        if isinstance(err, SessionEnded):
            self._token = None
            self._view = None
            self._end_reason = err.reason

    def _fresh(self, updated: Updated, key: str) -> Any:
        self._view = updated.session
        if updated.applied:
            self._touch_due = False  # the write was the activity
        return updated.session.data.get(key)


def _backoff(attempt: int) -> float:
    """Seconds to wait after the ``attempt``-th lost compare-and-set: random
    (so contenders do not collide again in lockstep), growing, at most 50 ms."""
    return random.uniform(0, min(0.05, 0.001 * 2 ** min(attempt, 6)))


def _too_many_conflicts() -> TesseraError:
    return TesseraError(409, "conflict", message="too many concurrent updates of one key; retry")


class Session(_State):
    """The session of a request under the WSGI middleware."""

    def __init__(self, client: TesseraClient, decision: Decision, facts: RequestFacts) -> None:
        super().__init__(decision, facts)
        self._client = client

    def set(self, key: str, value: Any) -> None:
        """Sets one key, atomically onto the latest stored data."""
        self.patch(set={key: value})

    def remove(self, key: str) -> None:
        """Removes one key."""
        self.patch(remove=[key])

    def patch(self, set: Mapping[str, Any] | None = None, remove: list[str] | None = None) -> None:
        """Sets and removes several keys in one atomic change."""
        token = self._require_token()
        try:
            self._view = self._client.patch_data(token, dict(set or {}), list(remove or []))
            self._touch_due = False
        except TesseraError as err:
            self._failed(err)
            raise

    def update(self, key: str, fn: Updater) -> Any:
        """Read-modify-write of one key that loses no concurrent update:
        ``fn`` gets the current value (``None`` if absent) and returns the
        new one, which is written only if the key still holds the value
        ``fn`` saw (compare-and-set in tessera's store); otherwise ``fn``
        runs again on the fresh value. Returns the value written.

        ``fn`` may run several times, so it must have no side effects.
        """
        token = self._require_token()
        current = self.get(key)
        for attempt in range(self._client.config.update_attempts):
            new = fn(current)
            try:
                updated = self._client.compare_and_set(token, key, current, new)
            except TesseraError as err:
                self._failed(err)
                raise
            fresh = self._fresh(updated, key)
            if updated.applied:
                return new
            current = fresh
            time.sleep(_backoff(attempt))
        raise _too_many_conflicts()

    def login(self, user_id: str, remember: bool = False) -> None:
        """Signs ``user_id`` in with a new token; the token the request came
        with, if any, stops working, so a token planted before sign-in is
        worth nothing after it. Another user's data is not carried over.

        ``remember=True`` ("keep me signed in") asks for tessera's remember
        lifetime class: its ``remember_idle_timeout`` and
        ``remember_absolute_timeout``, and a cookie ``Max-Age`` of that
        absolute lifetime. A tessera without that class answers 400
        ``remember_not_configured`` (:class:`InvalidInput`); the session the
        request came with is then left as it was."""
        self._before_cookie_change()
        self._installed(
            self._client.login(
                user_id, self._token, self._facts.ip, self._facts.user_agent, remember
            )
        )

    def rotate(self) -> None:
        """Replaces the token of this session; the old one dies at once."""
        self._before_cookie_change()
        token = self._require_token()
        try:
            self._installed(self._client.rotate(token))
        except TesseraError as err:
            self._failed(err)
            raise

    def logout(self) -> None:
        """Ends the session and clears the cookie. Safe to call without one."""
        self._before_cookie_change()
        self._signed_out(self._client.logout(self._token))


class AsyncSession(_State):
    """The session of a request under the ASGI middleware: the calls that
    reach tessera are coroutines."""

    def __init__(self, client: AsyncTesseraClient, decision: Decision, facts: RequestFacts) -> None:
        super().__init__(decision, facts)
        self._client = client

    async def set(self, key: str, value: Any) -> None:
        """Sets one key, atomically onto the latest stored data."""
        await self.patch(set={key: value})

    async def remove(self, key: str) -> None:
        """Removes one key."""
        await self.patch(remove=[key])

    async def patch(
        self, set: Mapping[str, Any] | None = None, remove: list[str] | None = None
    ) -> None:
        """Sets and removes several keys in one atomic change."""
        token = self._require_token()
        try:
            self._view = await self._client.patch_data(token, dict(set or {}), list(remove or []))
            self._touch_due = False
        except TesseraError as err:
            self._failed(err)
            raise

    async def update(self, key: str, fn: Updater) -> Any:
        """Read-modify-write of one key that loses no concurrent update (see
        :meth:`Session.update`). Returns the value written."""
        token = self._require_token()
        current = self.get(key)
        for attempt in range(self._client.config.update_attempts):
            new = fn(current)
            try:
                updated = await self._client.compare_and_set(token, key, current, new)
            except TesseraError as err:
                self._failed(err)
                raise
            fresh = self._fresh(updated, key)
            if updated.applied:
                return new
            current = fresh
            await asyncio.sleep(_backoff(attempt))
        raise _too_many_conflicts()

    async def login(self, user_id: str, remember: bool = False) -> None:
        """Signs ``user_id`` in on a new session; the old one stops working
        (``remember``: see :meth:`Session.login`)."""
        self._before_cookie_change()
        self._installed(
            await self._client.login(
                user_id, self._token, self._facts.ip, self._facts.user_agent, remember
            )
        )

    async def rotate(self) -> None:
        """Replaces the token of this session; the old one dies at once."""
        self._before_cookie_change()
        token = self._require_token()
        try:
            self._installed(await self._client.rotate(token))
        except TesseraError as err:
            self._failed(err)
            raise

    async def logout(self) -> None:
        """Ends the session and clears the cookie. Safe to call without one."""
        self._before_cookie_change()
        self._signed_out(await self._client.logout(self._token))
