"""What the middleware needs to know: where tessera is, the API key, and the
session cookie's attributes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

#: Largest ``application/x-www-form-urlencoded`` body the middleware buffers
#: to find a ``csrf_token`` field (the body is handed on to the app intact).
DEFAULT_FORM_LIMIT = 64 * 1024


@dataclass(frozen=True)
class ClientConfig:
    """Configuration of a tessera client and its middleware.

    The cookie defaults are the server's (OWASP Session Management Cheat
    Sheet; RFC 6265bis): ``__Host-session``, ``Secure``, ``HttpOnly``,
    ``SameSite=Strict``, ``Path=/``, no ``Domain``, ``Max-Age`` = the
    remaining absolute lifetime. They are the same because tessera writes
    every ``Set-Cookie`` value itself and finds its cookie in the
    ``Cookie`` header itself: one cookie policy, in one place (tessera's
    configuration, e.g. ``insecure_http`` for plain-HTTP development).

    >>> config = ClientConfig(url="http://127.0.0.1:8080", api_key="tsk_example")
    >>> config.timeout
    5.0
    >>> "tsk_example" in repr(config)
    False
    """

    #: Base URL of ``tessera serve`` (``http://127.0.0.1:8080``).
    url: str
    #: API key (``tessera api-key create NAME``). Never logged or shown in
    #: ``repr``.
    api_key: str = field(repr=False)
    #: Seconds to wait for tessera (connect, read, write, pool); then 503.
    timeout: float = 5.0
    #: Connections kept open to tessera (keep-alive reuse).
    max_connections: int = 100
    #: Largest url-encoded form body searched for a ``csrf_token`` field.
    form_limit: int = DEFAULT_FORM_LIMIT
    #: Attempts of ``Session.update``'s compare-and-set loop before it gives
    #: up with 409 (between attempts it waits a short random time, so
    #: contenders spread out).
    update_attempts: int = 200
    #: Also accept ``Authorization: Bearer tss_…`` session tokens (API
    #: clients). Off by default: a browser app needs only the cookie.
    accept_bearer: bool = False
    #: Paths of status polls (an expiry banner asking "am I still signed
    #: in?"): their requests do not count as activity, so polling does not
    #: keep an idle session alive (ASVS 5.0 V7.3.1: the idle timeout must
    #: measure the user's activity, not a timer's).
    status_paths: frozenset[str] = frozenset()
    #: Send ``Clear-Site-Data: "cookies"`` with the sign-out response, as
    #: tessera's own routes do (OWASP Session Management Cheat Sheet: clear
    #: the client side on logout). It clears every cookie of the origin.
    clear_site_data_on_logout: bool = True

    def __post_init__(self) -> None:
        # Caught at start-up rather than as a 503 on every request.
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("ClientConfig.url must be an http:// or https:// URL of tessera")
        if not self.api_key or not self.api_key.isascii() or not self.api_key.isprintable():
            raise ValueError(
                "ClientConfig.api_key must be a tessera API key (tessera api-key create NAME)"
            )

    @classmethod
    def from_env(cls, **overrides: object) -> ClientConfig:
        """Reads ``TESSERA_URL`` (default ``http://127.0.0.1:8080``) and
        ``TESSERA_API_KEY`` from the environment.

        >>> import os
        >>> os.environ["TESSERA_URL"] = "http://127.0.0.1:8080"
        >>> os.environ["TESSERA_API_KEY"] = "tsk_example"
        >>> ClientConfig.from_env().url
        'http://127.0.0.1:8080'
        """
        values: dict[str, object] = {
            "url": os.environ.get("TESSERA_URL", "http://127.0.0.1:8080"),
            "api_key": os.environ.get("TESSERA_API_KEY", ""),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
