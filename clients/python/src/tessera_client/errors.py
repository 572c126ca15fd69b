"""Errors a caller can act on, each with the HTTP status a web app should answer.

Messages never contain a session token, a CSRF token or the API key: they
name what went wrong, not the secret involved.
"""

from __future__ import annotations


class TesseraError(Exception):
    """Base class. ``status`` is what the app should answer its client.

    >>> err = TesseraError(400, "invalid_data", message="value too large")
    >>> (err.status, err.code, str(err))
    (400, 'invalid_data', 'invalid_data: value too large')
    """

    def __init__(
        self,
        status: int,
        code: str,
        *,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.reason = reason
        self.message = message
        detail = ", ".join(p for p in (reason, message) if p)
        super().__init__(f"{code}: {detail}" if detail else code)

    def body(self) -> dict[str, str]:
        """The JSON error body, in tessera's own shape
        ``{"error", "reason"?, "message"?}``."""
        out = {"error": self.code}
        if self.reason:
            out["reason"] = self.reason
        if self.message:
            out["message"] = self.message
        return out


class TesseraUnavailable(TesseraError):
    """tessera could not be reached, timed out, or answered 5xx.

    The request must fail closed (503), never be served as anonymous or as
    the last known user (ASVS 5.0 V7.2.1: session decisions are made by the
    trusted backend, and without it there is no decision).
    """

    def __init__(self, message: str = "the session service is not available; try again") -> None:
        super().__init__(503, "unavailable", message=message)


class TesseraMisconfigured(TesseraError):
    """tessera refused the API key (401/403 from ``/v1``). An operator must fix
    the configuration; the request fails closed with 503."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "unavailable",
            message="the session service refused this application's API key",
        )


class SessionEnded(TesseraError):
    """The session is gone: ``reason`` is ``expired_idle``,
    ``expired_absolute``, ``missing`` or any other reason tessera gives (the
    set is open: ``revoked``, ``signed_out``, …)."""

    def __init__(self, reason: str) -> None:
        super().__init__(401, "unauthenticated", reason=reason)


class CsrfRejected(TesseraError):
    """An unsafe request failed the CSRF/origin guard (403). ``reason`` is
    ``cross_site``, ``untrusted_same_site``, ``foreign_origin``,
    ``csrf_token_missing`` or ``csrf_token_invalid``."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(403, "csrf_rejected", reason=reason, message=message)


class InvalidInput(TesseraError):
    """tessera refused what the app sent (4xx other than 401/403/409): a bad
    user id, data that is not JSON, a body over the size limit."""
