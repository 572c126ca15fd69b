"""Flask integration: the WSGI middleware, an error handler, and
:func:`current_session`.

>>> from flask import Flask
>>> from tessera_client import ClientConfig
>>> from tessera_client.flask import init_app
>>> app = Flask(__name__)
>>> middleware = init_app(app, ClientConfig(url="http://127.0.0.1:8080", api_key="tsk_example"))

In a view: ``session = current_session()``; ``session.user``,
``session.login(user_id)``, …
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

from .config import ClientConfig
from .errors import TesseraError
from .responses import error_parts, session_from
from .session import Session
from .wsgi import TesseraMiddleware


def init_app(app: Flask, config: ClientConfig) -> TesseraMiddleware:
    """Wraps ``app.wsgi_app`` in :class:`~tessera_client.wsgi.TesseraMiddleware`
    and answers :class:`~tessera_client.errors.TesseraError` raised in views
    with its status and JSON body (Flask would otherwise make them 500s).
    Returns the middleware (``close()`` it at shutdown if you like)."""
    middleware = TesseraMiddleware(app.wsgi_app, config)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    app.register_error_handler(TesseraError, _answer)
    return middleware


def current_session() -> Session:
    """The tessera session of the request being handled."""
    session: Session = session_from(request.environ)
    return session


def _answer(err: Any) -> Response:
    status, headers, body = error_parts(err)
    # Set-Cookie values are added by the middleware on the way out.
    return Response(body, status=status, headers=[h for h in headers if h[0] != "content-length"])
