"""The two example apps work end to end over HTTP against a real tessera, as
a person would use them: sign-in form, home page, counter, new token,
sign-out — with the CSRF token in the forms' hidden field."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from apps import Calls
from conftest import App, Browser, serve_asgi, serve_wsgi
from tessera_client import ClientConfig
from tessera_server import TesseraServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    folder = EXAMPLES / name
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "page", raising=False)
    spec = importlib.util.spec_from_file_location(f"example_{name}", folder / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hidden_csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


@pytest.mark.parametrize("name", ["fastapi", "flask"])
def test_example_signs_in_counts_rotates_and_signs_out(
    name: str, tessera: TesseraServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESSERA_URL", tessera.url)
    monkeypatch.setenv("TESSERA_API_KEY", tessera.api_key)
    module = load_example(name, monkeypatch)
    serve: Any = serve_asgi if name == "fastapi" else serve_wsgi
    with serve(module.app) as url:
        app = App(name, url, Calls(), ClientConfig.from_env())
        browser = Browser(app)
        try:
            assert "Sign in" in browser.get("/").text
            wrong = browser.post("/login", data={"username": "demo", "password": "nope"})
            assert wrong.status_code == 401
            assert browser.token is None

            signed_in = browser.post("/login", data={"username": "demo", "password": "demo"})
            assert signed_in.status_code == 303
            home = browser.get("/").text
            assert "Signed in as demo" in home
            token = browser.token

            counted = browser.post("/count", csrf=False, data={"csrf_token": hidden_csrf(home)})
            assert counted.status_code == 303
            home = browser.get("/").text
            assert "<strong>1</strong>" in home
            # Without the form's token: refused.
            assert browser.post("/count", csrf=False, data={}).status_code == 403

            rotated = browser.post("/rotate", csrf=False, data={"csrf_token": hidden_csrf(home)})
            assert rotated.status_code == 303
            assert browser.token not in (None, token)
            home = browser.get("/").text
            assert "<strong>1</strong>" in home

            out = browser.post("/logout", csrf=False, data={"csrf_token": hidden_csrf(home)})
            assert out.status_code == 303
            assert browser.token is None
            assert "Sign in" in browser.get("/").text
        finally:
            app.close()
