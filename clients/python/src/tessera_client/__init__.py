"""tessera_client: sessions from a tessera server for Python web apps.

- :class:`ClientConfig`: where tessera is and the API key;
- :mod:`tessera_client.asgi` / :mod:`tessera_client.fastapi`: Starlette and
  FastAPI;
- :mod:`tessera_client.wsgi` / :mod:`tessera_client.flask`: Flask, Django,
  any WSGI app;
- :class:`TesseraClient` / :class:`AsyncTesseraClient`: the ``/v1`` calls
  themselves;
- :mod:`tessera_client.errors`: what can go wrong, with the HTTP status to
  answer.

The security decisions (CSRF and origin checks, deadlines, rotation, the
cookie's attributes) are all tessera's: this package passes on what the
request showed and what tessera answered, and fails closed (503) when
tessera cannot answer.
"""

from .client import AsyncTesseraClient, TesseraClient
from .config import ClientConfig
from .errors import (
    CsrfRejected,
    InvalidInput,
    SessionEnded,
    TesseraError,
    TesseraMisconfigured,
    TesseraUnavailable,
)
from .responses import session_from
from .session import AsyncSession, Session

__all__ = [
    "AsyncSession",
    "AsyncTesseraClient",
    "ClientConfig",
    "CsrfRejected",
    "InvalidInput",
    "Session",
    "SessionEnded",
    "TesseraClient",
    "TesseraError",
    "TesseraMisconfigured",
    "TesseraUnavailable",
    "session_from",
]

__version__ = "0.1.0"
