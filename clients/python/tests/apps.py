"""The same small application twice: FastAPI on the ASGI middleware and Flask
on the WSGI middleware. The tests run every scenario against both.

Routes (JSON):

- ``GET /whoami``: the session (401 with the end reason when there is none);
- ``GET /status``: the same, as a status poll when the config lists it in
  ``status_paths``;
- ``POST /login`` ``{"user": …}``: signs in (new token);
- ``POST /logout``, ``POST /rotate``;
- ``POST /counter``: ``update("count", +1)``, answers the new value;
- ``POST /data`` ``{"key": …, "value": …}``: ``set``;
- ``GET /data/{key}``.

``calls`` counts the handler runs, so a test can prove that a refused
request never reached the application.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from flask import Flask, jsonify, request

from tessera_client import ClientConfig
from tessera_client.asgi import TesseraMiddleware
from tessera_client.errors import SessionEnded
from tessera_client.fastapi import TesseraSession
from tessera_client.flask import current_session, init_app


class Calls:
    """How many times each handler ran (thread-safe enough for counting in
    tests: one list append per call)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def add(self, name: str) -> None:
        self.seen.append(name)

    def count(self, name: str) -> int:
        return self.seen.count(name)


def whoami_body(session: Any) -> dict[str, Any]:
    return {
        "user": session.user,
        "handle": session.handle,
        "expires_at": session.expires_at.isoformat() if session.expires_at else None,
        "idle_expires_at": session.idle_expires_at.isoformat(),
        "absolute_expires_at": session.absolute_expires_at.isoformat(),
        "csrf_token": session.csrf_token(),
        "data": dict(session.data),
    }


def unauthenticated(session: Any) -> dict[str, Any]:
    return {"error": "unauthenticated", "reason": session.end_reason or "missing"}


def make_fastapi_app(config: ClientConfig, calls: Calls) -> Any:
    app = FastAPI()
    app.add_middleware(TesseraMiddleware, config=config)

    @app.get("/whoami")
    async def whoami(session: TesseraSession) -> Any:
        calls.add("whoami")
        if not session.is_authenticated:
            return JSONResponse(unauthenticated(session), status_code=401)
        return whoami_body(session)

    @app.get("/status")
    async def status(session: TesseraSession) -> Any:
        calls.add("status")
        if not session.is_authenticated:
            return JSONResponse(unauthenticated(session), status_code=401)
        return whoami_body(session)

    @app.post("/login")
    async def login(request: Request, session: TesseraSession) -> Any:
        calls.add("login")
        body = await request.json()
        await session.login(body["user"], remember=body.get("remember") is True)
        return {"user": session.user, "csrf_token": session.csrf_token()}

    @app.post("/logout")
    async def logout(session: TesseraSession) -> Any:
        calls.add("logout")
        await session.logout()
        return {"ok": True}

    @app.post("/rotate")
    async def rotate(session: TesseraSession) -> Any:
        calls.add("rotate")
        await session.rotate()
        return {"csrf_token": session.csrf_token()}

    @app.post("/counter")
    async def counter(session: TesseraSession) -> Any:
        calls.add("counter")
        value = await session.update("count", lambda n: (n or 0) + 1)
        return {"count": value}

    @app.post("/data")
    async def put_data(request: Request, session: TesseraSession) -> Any:
        calls.add("data")
        body = await request.json()
        await session.set(body["key"], body["value"])
        return {"ok": True}

    @app.get("/data/{key}")
    async def get_data(key: str, session: TesseraSession) -> Any:
        calls.add("get")
        return {"value": session.get(key)}

    @app.post("/form")
    async def form(session: TesseraSession) -> Any:
        calls.add("form")
        if not session.is_authenticated:
            raise SessionEnded(session.end_reason or "missing")
        return {"user": session.user}

    return app


def make_flask_app(config: ClientConfig, calls: Calls) -> Any:
    app = Flask(__name__)
    init_app(app, config)

    @app.get("/whoami")
    def whoami() -> Any:
        calls.add("whoami")
        session = current_session()
        if not session.is_authenticated:
            return jsonify(unauthenticated(session)), 401
        return jsonify(whoami_body(session))

    @app.get("/status")
    def status() -> Any:
        calls.add("status")
        session = current_session()
        if not session.is_authenticated:
            return jsonify(unauthenticated(session)), 401
        return jsonify(whoami_body(session))

    @app.post("/login")
    def login() -> Any:
        calls.add("login")
        session = current_session()
        body = request.get_json()
        session.login(body["user"], remember=body.get("remember") is True)
        return jsonify(user=session.user, csrf_token=session.csrf_token())

    @app.post("/logout")
    def logout() -> Any:
        calls.add("logout")
        current_session().logout()
        return jsonify(ok=True)

    @app.post("/rotate")
    def rotate() -> Any:
        calls.add("rotate")
        session = current_session()
        session.rotate()
        return jsonify(csrf_token=session.csrf_token())

    @app.post("/counter")
    def counter() -> Any:
        calls.add("counter")
        value = current_session().update("count", lambda n: (n or 0) + 1)
        return jsonify(count=value)

    @app.post("/data")
    def put_data() -> Any:
        calls.add("data")
        body = request.get_json()
        current_session().set(body["key"], body["value"])
        return jsonify(ok=True)

    @app.get("/data/<key>")
    def get_data(key: str) -> Any:
        calls.add("get")
        return jsonify(value=current_session().get(key))

    @app.post("/form")
    def form() -> Any:
        calls.add("form")
        session = current_session()
        if not session.is_authenticated:
            raise SessionEnded(session.end_reason or "missing")
        return jsonify(user=session.user)

    return app


# -- Django -------------------------------------------------------------------
# Django's settings are global to the process: configured once, with views
# that report to whichever ``Calls`` the running app installed.

_django_calls = Calls()


def _django_views() -> list[Any]:
    import json

    from django.http import HttpRequest, JsonResponse
    from django.urls import path

    from tessera_client.django import tessera_session

    def whoami(request: HttpRequest) -> JsonResponse:
        _django_calls.add("whoami")
        session = tessera_session(request)
        if not session.is_authenticated:
            return JsonResponse(unauthenticated(session), status=401)
        return JsonResponse(whoami_body(session))

    def status(request: HttpRequest) -> JsonResponse:
        _django_calls.add("status")
        session = tessera_session(request)
        if not session.is_authenticated:
            return JsonResponse(unauthenticated(session), status=401)
        return JsonResponse(whoami_body(session))

    def login(request: HttpRequest) -> JsonResponse:
        _django_calls.add("login")
        session = tessera_session(request)
        body = json.loads(request.body)
        session.login(body["user"], remember=body.get("remember") is True)
        return JsonResponse({"user": session.user, "csrf_token": session.csrf_token()})

    def logout(request: HttpRequest) -> JsonResponse:
        _django_calls.add("logout")
        tessera_session(request).logout()
        return JsonResponse({"ok": True})

    def rotate(request: HttpRequest) -> JsonResponse:
        _django_calls.add("rotate")
        session = tessera_session(request)
        session.rotate()
        return JsonResponse({"csrf_token": session.csrf_token()})

    def counter(request: HttpRequest) -> JsonResponse:
        _django_calls.add("counter")
        value = tessera_session(request).update("count", lambda n: (n or 0) + 1)
        return JsonResponse({"count": value})

    def put_data(request: HttpRequest) -> JsonResponse:
        _django_calls.add("data")
        body = json.loads(request.body)
        tessera_session(request).set(body["key"], body["value"])
        return JsonResponse({"ok": True})

    def get_data(request: HttpRequest, key: str) -> JsonResponse:
        _django_calls.add("get")
        return JsonResponse({"value": tessera_session(request).get(key)})

    def form(request: HttpRequest) -> JsonResponse:
        _django_calls.add("form")
        session = tessera_session(request)
        if not session.is_authenticated:
            raise SessionEnded(session.end_reason or "missing")
        return JsonResponse({"user": session.user})

    return [
        path("whoami", whoami),
        path("status", status),
        path("login", login),
        path("logout", logout),
        path("rotate", rotate),
        path("counter", counter),
        path("data", put_data),
        path("data/<str:key>", get_data),
        path("form", form),
    ]


urlpatterns: list[Any] = []


def make_django_app(config: ClientConfig, calls: Calls) -> Any:
    global _django_calls
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    from tessera_client.wsgi import TesseraMiddleware as WsgiMiddleware

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="tests-only",
            ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=["tessera_client.django.TesseraErrorMiddleware"],
            INSTALLED_APPS=[],
            DATABASES={},
            USE_TZ=True,
        )
        django.setup()
        urlpatterns.extend(_django_views())
    _django_calls = calls
    return WsgiMiddleware(get_wsgi_application(), config)
