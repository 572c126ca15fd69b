"""Concurrent updates of one session lose nothing: 100 requests that each
add one to a counter at the same time end at exactly 100."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from conftest import Browser

REQUESTS = 100


def test_concurrent_updates_lose_nothing(browser: Browser) -> None:
    browser.login("alice")
    headers = {
        "cookie": f"__Host-session={browser.token}",
        "sec-fetch-site": "same-origin",
        "x-csrf-token": browser.csrf or "",
    }
    http = browser.app.http

    def bump(_: int) -> int:
        response = http.post("/counter", headers=headers)
        assert response.status_code == 200, response.text
        return int(response.json()["count"])

    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        seen = list(pool.map(bump, range(REQUESTS)))

    # Every request wrote a different value: no two read the same count.
    assert sorted(seen) == list(range(1, REQUESTS + 1))
    assert browser.get("/whoami").json()["data"]["count"] == REQUESTS


def test_concurrent_sets_of_different_keys_all_land(browser: Browser) -> None:
    browser.login("alice")
    headers = {
        "cookie": f"__Host-session={browser.token}",
        "sec-fetch-site": "same-origin",
        "x-csrf-token": browser.csrf or "",
    }
    http = browser.app.http

    def put(i: int) -> None:
        response = http.post("/data", headers=headers, json={"key": f"k{i}", "value": i})
        assert response.status_code == 200, response.text

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(put, range(50)))
    data = browser.get("/whoami").json()["data"]
    assert data == {f"k{i}": i for i in range(50)}
