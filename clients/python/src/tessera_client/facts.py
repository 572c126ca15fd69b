"""What the middleware tells tessera about a request: the facts tessera's
request guard decides on (method, ``Origin``, ``Sec-Fetch-Site``, ``Host``,
the presented CSRF token and session credential).

The decision itself is never made here: tessera runs the same guard as its
own axum layer, so every integration accepts and refuses the same requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs

#: Methods that do not change state (RFC 9110 §9.2.1); every other method
#: needs the CSRF/origin checks.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

#: Header carrying the CSRF token.
CSRF_HEADER = "x-csrf-token"
#: Form field carrying the CSRF token in url-encoded bodies.
CSRF_FIELD = "csrf_token"
#: Bearer values examined per request; the rest are ignored, so a stuffed
#: request costs bounded work.
MAX_VALUES = 16
#: Session-token cookie pairs passed on per request: as many as tessera
#: examines (``tessera::cookie::MAX_COOKIE_PAIRS``).
MAX_COOKIE_PAIRS = 64
#: Prefix of every tessera session token.
TOKEN_PREFIX = "tss_"


@dataclass
class RequestFacts:
    """The parts of a request that tessera needs. ``repr`` shows no secret.

    >>> facts = RequestFacts(method="POST", cookies=["__Host-session=tss_x"])
    >>> facts.is_unsafe
    True
    >>> "tss_x" in repr(facts)
    False
    """

    method: str
    #: Cookie pairs shaped like session tokens (see session_cookie_pairs).
    cookies: list[str] = field(default_factory=list, repr=False)
    authorization: list[str] = field(default_factory=list, repr=False)
    origin: str | None = None
    sec_fetch_site: str | None = None
    host: str | None = None
    csrf_token: str | None = field(default=None, repr=False)
    ip: str | None = None
    user_agent: str | None = None

    @property
    def is_unsafe(self) -> bool:
        """True for methods that need the CSRF/origin checks."""
        return self.method not in SAFE_METHODS


def header_text(raw: bytes) -> str:
    """A header value as text. A value with bytes outside visible ASCII must
    not read as absent (that would let a later check be skipped), so it
    becomes ``""``, which tessera's origin check refuses.

    >>> header_text(b"https://app.test")
    'https://app.test'
    >>> header_text("https://\u00e9vil.test".encode())
    ''
    """
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return ""
    if any(not (0x20 <= ord(c) < 0x7F or c == "\t") for c in text):
        return ""
    return text.strip()


def facts_from_headers(
    method: str, headers: list[tuple[bytes, bytes]], ip: str | None
) -> RequestFacts:
    """Collects the facts from raw (lower-case name, value) header pairs."""
    # Methods are case-sensitive (RFC 9110 §9.1): passed on as sent.
    facts = RequestFacts(method=method, ip=ip)
    for name, value in headers:
        if name == b"cookie":
            facts.cookies.extend(session_cookie_pairs(value, MAX_COOKIE_PAIRS - len(facts.cookies)))
        elif name == b"authorization" and len(facts.authorization) < MAX_VALUES:
            facts.authorization.append(value.decode("latin-1"))
        elif name == b"origin" and facts.origin is None:
            facts.origin = header_text(value)
        elif name == b"sec-fetch-site" and facts.sec_fetch_site is None:
            facts.sec_fetch_site = header_text(value)
        elif name == b"host" and facts.host is None:
            facts.host = header_text(value)
        elif name == CSRF_HEADER.encode() and facts.csrf_token is None:
            facts.csrf_token = header_text(value)
        elif name == b"user-agent" and facts.user_agent is None:
            facts.user_agent = value.decode("latin-1")[:512]
    return facts


def session_cookie_pairs(header: bytes, limit: int) -> list[str]:
    """The ``name=value`` pairs of a ``Cookie`` header whose value is shaped
    like a tessera session token, at most ``limit``.

    Only these go to tessera: it ignores every value that is not a
    well-formed token anyway (``crates/tessera/src/cookie.rs``, rule 1), so
    its decision is the same — duplicates of the session cookie included —
    while the application's other cookies (other systems' credentials among
    them) never leave it, and a header stuffed with cookies stays small.

    >>> session_cookie_pairs(b"theme=dark; __Host-session=tss_abc; b=tss_x", 64)
    ['__Host-session=tss_abc', 'b=tss_x']
    """
    pairs: list[str] = []
    for pair in header.decode("latin-1").split(";"):
        if len(pairs) >= limit:
            break
        name, sep, value = pair.strip().partition("=")
        if sep and value.strip().strip('"').startswith(TOKEN_PREFIX):
            pairs.append(f"{name}={value}")
    return pairs


def is_form(content_type: str | None) -> bool:
    """True for ``application/x-www-form-urlencoded`` bodies, the only ones
    searched for a ``csrf_token`` field (multipart forms send the header)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded"


def form_csrf_token(body: bytes) -> str | None:
    """The ``csrf_token`` field of a url-encoded body, if there is exactly
    one (two different values are ambiguous and count as none).

    >>> form_csrf_token(b"name=x&csrf_token=abc")
    'abc'
    >>> form_csrf_token(b"csrf_token=a&csrf_token=b") is None
    True
    """
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=1000)
    except (UnicodeDecodeError, ValueError):
        return None
    values = set(fields.get(CSRF_FIELD, []))
    return values.pop() if len(values) == 1 else None
