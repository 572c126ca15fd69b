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
        await session.login(body["user"])
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
        session.login(request.get_json()["user"])
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
