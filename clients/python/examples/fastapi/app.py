"""A FastAPI app with tessera sessions: sign in, see the session, count,
rotate the token, sign out.

    TESSERA_URL=http://127.0.0.1:8080 TESSERA_API_KEY=tsk_… uvicorn app:app --port 8000

(see clients/python/README.md for the five-minute path).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from page import check_password, home_page, sign_in_page

from tessera_client import ClientConfig
from tessera_client.asgi import TesseraMiddleware
from tessera_client.fastapi import TesseraSession

app = FastAPI()
app.add_middleware(TesseraMiddleware, config=ClientConfig.from_env())


async def form(request: Request) -> dict[str, str]:
    fields = parse_qs((await request.body()).decode(), max_num_fields=20)
    return {k: v[0] for k, v in fields.items()}


@app.get("/", response_class=HTMLResponse)
async def home(session: TesseraSession) -> str:
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
async def login(request: Request, session: TesseraSession) -> Response:
    fields = await form(request)
    if not check_password(fields.get("username", ""), fields.get("password", "")):
        return HTMLResponse(sign_in_page(error="Wrong user or password."), status_code=401)
    # A new session: whatever token the browser had before stops working.
    await session.login(fields["username"])
    return RedirectResponse("/", status_code=303)


@app.post("/count")
async def count(session: TesseraSession) -> Response:
    await session.update("count", lambda n: (n or 0) + 1)
    return RedirectResponse("/", status_code=303)


@app.post("/rotate")
async def rotate(session: TesseraSession) -> Response:
    await session.rotate()
    return RedirectResponse("/", status_code=303)


@app.post("/logout")
async def logout(session: TesseraSession) -> Response:
    await session.logout()
    return RedirectResponse("/", status_code=303)
