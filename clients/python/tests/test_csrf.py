"""The CSRF/origin guard, as tessera applies it to requests seen by the
middleware: a refused request gets 403, never reaches the handler, and
changes nothing in the session."""

from __future__ import annotations

import pytest

from conftest import Browser


def signed_in_with_count(browser: Browser) -> int:
    browser.login("alice")
    response = browser.post("/counter")
    assert response.status_code == 200, response.text
    return int(response.json()["count"])


def count_now(browser: Browser) -> int:
    return int(browser.get("/whoami").json()["data"]["count"])


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"sec-fetch-site": "cross-site", "origin": "https://evil.test"}, "cross_site"),
        ({"sec-fetch-site": "same-site", "origin": "https://evil.app.test"}, "untrusted_same_site"),
        ({"origin": "https://evil.test"}, "foreign_origin"),
        ({"origin": "null"}, "foreign_origin"),
    ],
)
def test_cross_site_unsafe_request_is_refused(
    browser: Browser, headers: dict[str, str], reason: str
) -> None:
    before = signed_in_with_count(browser)
    calls = browser.app.calls.count("counter")
    # Even with the right CSRF token: the origin check comes first.
    response = browser.post("/counter", site=None, headers=headers)
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_rejected"
    assert response.json()["reason"] == reason
    assert browser.app.calls.count("counter") == calls
    assert count_now(browser) == before


def test_unsafe_request_without_csrf_token_is_refused(browser: Browser) -> None:
    before = signed_in_with_count(browser)
    calls = browser.app.calls.count("counter")
    response = browser.post("/counter", csrf=False)
    assert response.status_code == 403
    assert response.json() == {"error": "csrf_rejected", "reason": "csrf_token_missing"}
    assert browser.app.calls.count("counter") == calls
    assert count_now(browser) == before


def test_unsafe_request_with_a_wrong_csrf_token_is_refused(browser: Browser) -> None:
    before = signed_in_with_count(browser)
    other = Browser(browser.app)
    other.login("bob")
    assert other.csrf is not None
    for token in (other.csrf, "junk", "A" * 86):
        response = browser.post("/counter", csrf=False, headers={"x-csrf-token": token})
        assert response.status_code == 403
        assert response.json()["reason"] == "csrf_token_invalid"
    assert count_now(browser) == before


def test_csrf_token_in_a_urlencoded_form_field_is_accepted(browser: Browser) -> None:
    browser.login("alice")
    assert browser.csrf is not None
    # The form body reaches the application intact after the middleware read
    # the token from it.
    response = browser.post("/form", csrf=False, data={"csrf_token": browser.csrf, "note": "hello"})
    assert response.status_code == 200, response.text
    assert response.json() == {"user": "alice"}
    refused = browser.post("/form", csrf=False, data={"csrf_token": "junk"})
    assert refused.status_code == 403


def test_login_from_another_site_is_refused(browser: Browser) -> None:
    # Login CSRF: another site must not sign the browser into an account.
    response = browser.post(
        "/login",
        json={"user": "mallory"},
        site="cross-site",
        headers={"origin": "https://evil.test"},
    )
    assert response.status_code == 403
    assert browser.token is None
    assert browser.app.calls.count("login") == 0


def test_safe_methods_pass_without_token(browser: Browser) -> None:
    browser.login("alice")
    response = browser.get("/whoami", headers={"sec-fetch-site": "cross-site"})
    assert response.status_code == 200
