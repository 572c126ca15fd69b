"""tessera's wire contract (``clients/PROTOCOL.md``): the calls this client
makes and how their answers are read. Pure functions, shared by the blocking
and the asyncio client.

Every answer is validated before use: an answer that is not what the
contract says (a proxy's HTML error page, a truncated body) is treated as
"tessera unavailable", never as a decision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from .errors import (
    CsrfRejected,
    InvalidInput,
    SessionEnded,
    TesseraError,
    TesseraMisconfigured,
    TesseraUnavailable,
)
from .facts import RequestFacts

log = logging.getLogger("tessera_client")


@dataclass(frozen=True)
class Call:
    """One request to tessera."""

    method: str
    path: str
    body: dict[str, Any]


@dataclass(frozen=True)
class SessionView:
    """A live session as tessera reports it."""

    user_id: str | None
    handle: str
    data: dict[str, Any]
    idle_expires_at: datetime
    absolute_expires_at: datetime
    authenticated_at: datetime | None
    csrf_token: str


@dataclass(frozen=True)
class Decision:
    """tessera's answer about one incoming request."""

    #: ``session``, ``no_session`` or ``refused``.
    outcome: str
    reason: str | None
    status: int | None
    token: str | None
    session: SessionView | None
    set_cookie: list[str]
    #: For a check sent with ``touch=False``: whether counting the request
    #: as activity would move the idle deadline now (see ``touch_call``).
    touch_due: bool = False
    #: For a check that carried a data patch: ``applied``, ``conflict``, or
    #: ``None`` (no live session: nothing was written).
    patch: str | None = None

    @property
    def end_reason(self) -> str | None:
        """Why a presented session is not live (``None`` when nothing was
        presented or the session is live)."""
        if self.outcome != "no_session" or self.reason in (None, "absent"):
            return None
        return self.reason


@dataclass(frozen=True)
class Issued:
    """A newly installed token."""

    token: str
    session: SessionView
    set_cookie: list[str]


class BadAnswer(Exception):
    """An answer that does not follow the contract."""


# -- calls ---------------------------------------------------------------------


def check_call(facts: RequestFacts, touch: bool = True) -> Call:
    """``POST /v1/requests/check``."""
    body: dict[str, Any] = {"method": facts.method, "touch": touch}
    if facts.cookies:
        # Only the pairs shaped like session tokens (facts.session_cookie_pairs).
        body["cookie"] = "; ".join(facts.cookies)
    if facts.authorization:
        body["authorization"] = facts.authorization[0]
    for name in ("origin", "sec_fetch_site", "host", "csrf_token"):
        value = getattr(facts, name)
        if value is not None:
            body[name] = value
    return Call("POST", "/v1/requests/check", body)


def login_call(
    user_id: str,
    token: str | None,
    ip: str | None,
    user_agent: str | None,
    remember: bool = False,
) -> Call:
    """``POST /v1/requests/login``: new session; the presented one dies.
    ``remember`` asks for the "keep me signed in" lifetime class."""
    body: dict[str, Any] = {"user_id": user_id, "token": token, "remember": remember}
    if ip is not None:
        body["ip"] = ip
    if user_agent is not None:
        body["user_agent"] = user_agent
    return Call("POST", "/v1/requests/login", body)


def rotate_call(token: str) -> Call:
    """``POST /v1/requests/rotate``."""
    return Call("POST", "/v1/requests/rotate", {"token": token})


def logout_call(token: str | None) -> Call:
    """``POST /v1/requests/logout``."""
    return Call("POST", "/v1/requests/logout", {"token": token})


def _session_check(token: str, **extra: Any) -> Call:
    """A check of the session of ``token`` itself, made by the application
    after its request passed its own check: the token goes as a bearer
    credential (no cookie changes, no second CSRF check)."""
    body: dict[str, Any] = {"method": "PATCH", "authorization": f"Bearer {token}", **extra}
    return Call("POST", "/v1/requests/check", body)


def patch_call(token: str, set: dict[str, Any], remove: list[str]) -> Call:
    """A check carrying a data patch: keys set and removed atomically, in
    the same call that finds the session."""
    return _session_check(token, patch={"set": set, "remove": remove})


def cas_call(token: str, key: str, current: Any, new: Any) -> Call:
    """``PATCH /v1/sessions/data`` with ``expect``: written only if ``key``
    still holds ``current`` (``None`` = absent). A compare-and-set goes to
    the data endpoint rather than riding on a check: a lost race answers
    409 with the stored session at once, and the caller retries on it."""
    return Call(
        "PATCH",
        "/v1/sessions/data",
        {"token": token, "set": {key: new}, "expect": {key: current}},
    )


def touch_call(token: str) -> Call:
    """A check that counts as activity (the deferred touch)."""
    return _session_check(token, touch=True)


# -- answers -------------------------------------------------------------------


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise BadAnswer("not JSON") from None
    if not isinstance(body, dict):
        raise BadAnswer("not a JSON object")
    return body


def _str(body: dict[str, Any], key: str, optional: bool = False) -> Any:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise BadAnswer(f"{key} is not a string")
    return value


def _time(body: dict[str, Any], key: str, optional: bool = False) -> Any:
    value = _str(body, key, optional)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadAnswer(f"{key} is not an RFC 3339 time") from None


def _cookies(body: dict[str, Any]) -> list[str]:
    values = body.get("set_cookie", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise BadAnswer("set_cookie is not a list of strings")
    return values


def _view(body: Any) -> SessionView:
    if not isinstance(body, dict):
        raise BadAnswer("session is not an object")
    data = body.get("data", {})
    if not isinstance(data, dict):
        raise BadAnswer("data is not an object")
    return SessionView(
        user_id=_str(body, "user_id", optional=True),
        handle=_str(body, "handle"),
        data=data,
        idle_expires_at=_time(body, "idle_expires_at"),
        absolute_expires_at=_time(body, "absolute_expires_at"),
        authenticated_at=_time(body, "authenticated_at", optional=True),
        csrf_token=_str(body, "csrf_token"),
    )


def error_of(response: httpx.Response) -> TesseraError:
    """The error an unsuccessful answer stands for."""
    status = response.status_code
    if status >= 500 or status == 429:
        # tessera's store failed, or one of its limits applies: no decision,
        # so fail closed.
        log.error("tessera answered %d: failing closed", status)
        return TesseraUnavailable()
    try:
        body = _json(response)
        code = _str(body, "error")
    except BadAnswer:
        log.error("tessera answered %d with a body that is not its error shape", status)
        return TesseraUnavailable("the session service gave an answer this client cannot read")
    reason = body.get("reason") if isinstance(body.get("reason"), str) else None
    message = body.get("message") if isinstance(body.get("message"), str) else None
    if status == 401 and code == "unauthorized":
        # The API key, not the user's session: an operator's problem.
        log.error("tessera refused this application's API key (401 unauthorized)")
        return TesseraMisconfigured()
    if status == 401:
        return SessionEnded(reason or "missing")
    if status == 403 and code == "csrf_rejected":
        return CsrfRejected(reason or "csrf", message)
    if status == 403:
        return TesseraMisconfigured()
    if status == 409:
        return TesseraError(409, code, reason=reason, message=message)
    return InvalidInput(status, code, reason=reason, message=message)


def _ok(response: httpx.Response) -> dict[str, Any]:
    if not response.is_success:
        raise error_of(response)
    try:
        return _json(response)
    except BadAnswer:
        log.error("tessera answered %d with a body that is not JSON", response.status_code)
        raise TesseraUnavailable(
            "the session service gave an answer this client cannot read"
        ) from None


def _reading(fn: Any) -> Any:
    """Runs a parser; a contract violation is 'unavailable' (fail closed)."""
    try:
        return fn()
    except BadAnswer as err:
        # What was wrong, never the body (it may hold a token).
        log.error("tessera's answer does not follow the protocol: %s", err)
        raise TesseraUnavailable(
            "the session service gave an answer this client cannot read"
        ) from None


def check_answer(response: httpx.Response) -> Decision:
    """Reads a ``/v1/requests/check`` answer."""
    body = _ok(response)

    def parse() -> Decision:
        outcome = _str(body, "outcome")
        if outcome not in ("session", "no_session", "refused"):
            raise BadAnswer("unknown outcome")
        status = body.get("status")
        if status is not None and not isinstance(status, int):
            raise BadAnswer("status is not a number")
        session = _view(body.get("session")) if outcome == "session" else None
        token = _str(body, "token") if outcome == "session" else None
        return Decision(
            outcome=outcome,
            reason=_str(body, "reason", optional=True),
            status=status,
            token=token,
            session=session,
            set_cookie=_cookies(body),
            touch_due=body.get("touch_due") is True,
            patch=_str(body, "patch", optional=True),
        )

    decision: Decision = _reading(parse)
    return decision


def issued_answer(response: httpx.Response) -> Issued:
    """Reads a login or rotate answer."""
    body = _ok(response)
    issued: Issued = _reading(
        lambda: Issued(
            token=_str(body, "token"),
            session=_view(body.get("session")),
            set_cookie=_cookies(body),
        )
    )
    return issued


def view_answer(response: httpx.Response) -> SessionView:
    """Reads a ``PATCH /v1/sessions/data`` answer."""
    body = _ok(response)
    view: SessionView = _reading(lambda: _view(body))
    return view


def signed_out_answer(response: httpx.Response) -> list[str]:
    """Reads a logout answer: the ``Set-Cookie`` values that clear the
    cookie."""
    body = _ok(response)
    cookies: list[str] = _reading(lambda: _cookies(body))
    return cookies


@dataclass(frozen=True)
class Updated:
    """The answer of a compare-and-set: whether it was written, and the
    session as stored (the fresh value to retry from when it was not)."""

    applied: bool
    session: SessionView


def cas_answer(response: httpx.Response) -> Updated:
    """Reads a ``PATCH /v1/sessions/data`` answer with ``expect``: 200 and
    the session when written; 409 ``expectation_failed`` and the session as
    stored now when the expectation did not hold."""
    if response.status_code == 409:
        try:
            body = _json(response)
        except BadAnswer:
            raise error_of(response) from None
        if body.get("reason") == "expectation_failed":
            stored: SessionView = _reading(lambda: _view(body.get("session")))
            return Updated(applied=False, session=stored)
        raise error_of(response)
    return Updated(applied=True, session=view_answer(response))


def written_answer(response: httpx.Response) -> Updated:
    """Reads the answer to a check that carried a patch: whether it was
    written, with the session as stored. Without a live session nothing was
    written: :class:`SessionEnded` with the reason."""
    decision = check_answer(response)
    if decision.outcome != "session" or decision.session is None:
        raise SessionEnded(decision.reason or "missing")
    if decision.patch not in ("applied", "conflict"):
        log.error("tessera answered a write without its outcome")
        raise TesseraUnavailable("the session service gave an answer this client cannot read")
    return Updated(applied=decision.patch == "applied", session=decision.session)
