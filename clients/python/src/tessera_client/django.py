"""Django integration: the WSGI middleware wraps the application, and a
Django middleware answers :class:`~tessera_client.errors.TesseraError` raised
in views with its status (Django would make it a 500).

``wsgi.py``::

    from django.core.wsgi import get_wsgi_application
    from tessera_client import ClientConfig
    from tessera_client.wsgi import TesseraMiddleware

    application = TesseraMiddleware(get_wsgi_application(), ClientConfig.from_env())

``settings.py``: add ``"tessera_client.django.TesseraErrorMiddleware"`` to
``MIDDLEWARE``. tessera checks CSRF tokens and origins itself, so Django's
``CsrfViewMiddleware`` is not needed for requests tessera guards (render
:meth:`Session.csrf_token` in forms instead of ``{% csrf_token %}``).

In a view: ``session = tessera_session(request)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from .errors import TesseraError
from .responses import session_from
from .session import Session


def tessera_session(request: HttpRequest) -> Session:
    """The tessera session of a request (``request.META`` is the WSGI
    environ the middleware put it in)."""
    session: Session = session_from(request)
    return session


class TesseraErrorMiddleware:
    """Answers a ``TesseraError`` raised in a view with its status and
    tessera's JSON error shape (``SessionEnded``: 401 with the reason;
    ``TesseraUnavailable``: 503; ``InvalidInput``: the 4xx)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        if not isinstance(exception, TesseraError):
            return None
        response = JsonResponse(exception.body(), status=exception.status)
        response["Cache-Control"] = "no-store"
        return response
