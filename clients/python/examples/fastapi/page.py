"""The HTML both examples render (kept apart so each app file shows only
the session code). Every value is escaped."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;line-height:1.5}"
    "label{display:block;margin:.5rem 0}"
)


def sign_in_page(error: str | None = None, reason: str | None = None) -> str:
    notes = {
        "expired_idle": "You were away for too long; please sign in again.",
        "expired_absolute": "Your session reached its maximum length; please sign in again.",
    }
    note = notes.get(reason or "", "")
    return f"""<!doctype html><meta charset="utf-8"><title>Sign in</title><style>{STYLE}</style>
<h1>Sign in</h1>
{f'<p role="status">{escape(note)}</p>' if note else ""}
{f'<p role="alert">{escape(error)}</p>' if error else ""}
<form method="post" action="/login">
  <label>User <input name="username" autocomplete="username" required></label>
  <label>Password
    <input name="password" type="password" autocomplete="current-password" required></label>
  <button>Sign in</button>
</form>
<p>Demo account: <code>demo</code> / <code>demo</code>.</p>"""


def home_page(user: str, handle: str, expires_at: datetime, visits: Any, csrf_token: str) -> str:
    field = f'<input type="hidden" name="csrf_token" value="{escape(csrf_token)}">'
    return f"""<!doctype html><meta charset="utf-8"><title>Signed in</title><style>{STYLE}</style>
<h1>Signed in as {escape(user)}</h1>
<p>Session <code>{escape(handle)}</code> ends at <time>{escape(expires_at.isoformat())}</time>
unless you keep using it.</p>
<p>Counter in the session: <strong>{escape(str(visits or 0))}</strong></p>
<form method="post" action="/count">{field}<button>Add one</button></form>
<form method="post" action="/rotate">{field}<button>New session token</button></form>
<form method="post" action="/logout">{field}<button>Sign out</button></form>"""


def check_password(username: str, password: str) -> bool:
    """Stands in for your user store (verify a real password hash there)."""
    import hmac

    # Both compared, always: the time taken says nothing about which failed.
    user_ok = hmac.compare_digest(username.encode(), b"demo")
    password_ok = hmac.compare_digest(password.encode(), b"demo")
    return user_ok and password_ok
