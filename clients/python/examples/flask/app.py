"""A Flask app with tessera sessions: sign in, see the session, count,
rotate the token, sign out.

    TESSERA_URL=http://127.0.0.1:8080 TESSERA_API_KEY=tsk_… flask --app app run --port 8000

(see clients/python/README.md for the five-minute path).
"""

from __future__ import annotations

from flask import Flask, redirect, request
from page import check_password, home_page, sign_in_page
from werkzeug.wrappers import Response

from tessera_client import ClientConfig
from tessera_client.flask import current_session, init_app

app = Flask(__name__)
init_app(app, ClientConfig.from_env())


@app.get("/")
def home() -> str:
    session = current_session()
    if not session.is_authenticated:
        return sign_in_page(reason=session.end_reason)
    return home_page(
        session.user or "",
        session.handle or "",
        session.expires_at,  # type: ignore[arg-type]
        session.get("count"),
        session.csrf_token() or "",
    )


@app.post("/login")
def login() -> Response | tuple[str, int]:
    username = request.form.get("username", "")
    if not check_password(username, request.form.get("password", "")):
        return sign_in_page(error="Wrong user or password."), 401
    # A new session: whatever token the browser had before stops working.
    current_session().login(username)
    return redirect("/", code=303)


@app.post("/count")
def count() -> Response:
    current_session().update("count", lambda n: (n or 0) + 1)
    return redirect("/", code=303)


@app.post("/rotate")
def rotate() -> Response:
    current_session().rotate()
    return redirect("/", code=303)


@app.post("/logout")
def logout() -> Response:
    current_session().logout()
    return redirect("/", code=303)
