"""Segment's browser library, Analytics.js 2.0 (`@segment/analytics-next`, pinned in
tests/e2e/browser), in headless Chromium from Debian, on a page served from another origin
than the receiver, against gunicorn on Postgres (CONTRACT section 5).

A visitor views a page and requests a demo; on a later page load (the same browser, so the
same anonymousId) they sign up with an identify. signal_feed must show the page and the track
under the visitor's anonymousId, then all three on the lead of that email, none cold.

Without chromium, chromedriver or node these tests skip loudly; under CI (env CI set) they
fail instead, since .ci/run installs them.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.e2e.chromium import DEADLINE_S, chromium, missing, require_chromium
from tests.e2e.conftest import Server, cli, create_account, query

BROWSER_DIR = Path(__file__).parent / "browser"


@pytest.fixture(scope="session")
def analytics_next() -> Path:
    """tests/e2e/browser with its pinned packages installed (CI starts from a fresh clone),
    once Chromium is known to be there too."""
    require_chromium()
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        missing("node and npm not found on PATH")
    installed = BROWSER_DIR / "node_modules" / ".package-lock.json"
    lock = BROWSER_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            [str(npm), "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=BROWSER_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci in {BROWSER_DIR} failed:\n{done.stdout}\n{done.stderr}")
    return BROWSER_DIR


@pytest.fixture(scope="session")
def site(analytics_next: Path) -> Iterator[str]:
    """The customer's site: tests/e2e/browser served on a port of its own, under localhost,
    so that its origin is another than the receiver's (127.0.0.1 on another port)."""
    handler = functools.partial(_QuietHandler, directory=str(analytics_next))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def visit(driver: Any, site: str, **params: str) -> dict[str, Any]:
    """Load the page with these parameters and wait for its calls to be made."""
    driver.get(f"{site}/page.html?{urlencode(params)}")
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.result.then(done);"
    )
    assert result["ok"], result
    return result


def browser_key(database_url: str, account_id: str, *origins: str) -> str:
    flags = [arg for origin in origins for arg in ("--origin", origin)]
    created = cli(database_url, "create-key", str(account_id), "--browser", *flags).stdout
    return json.loads(created)["api_key"]


def requests_made(driver: Any) -> list[dict[str, Any]]:
    return list(driver.execute_script("return window.requests"))


def feed(database_url: str, account_id: str) -> list[Any]:
    return query(
        database_url,
        "SELECT event_type, event_name, anonymous_id, user_id, email, is_cold "
        "FROM signal_feed WHERE account_id = :a ORDER BY signal_id",
        a=account_id,
    )


def wait_for(read: Callable[[], list[Any]], count: int) -> list[Any]:
    """What read returns once it has count rows, or at the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    rows = read()
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = read()
    return rows


@pytest.mark.parametrize("batching", ["0", "1"], ids=["default-delivery", "batching-delivery"])
def test_analytics_js_sends_a_visit_that_lands_on_the_lead_after_identify(
    site: str, server: Server, browser: Any, batching: str
) -> None:
    account = create_account(server.database_url)
    key = browser_key(server.database_url, account["account_id"], site)
    tag = uuid.uuid4().hex[:10]
    user_id, email = f"user-{tag}", f"ada-{tag}@example.com"
    common = {"writeKey": key, "cdn": server.url, "batching": batching}

    browsing = visit(browser, site, step="browse", **common)
    anonymous_id = browsing["anonymousId"]
    visited = wait_for(lambda: feed(server.database_url, account["account_id"]), 2)
    assert [(r["event_type"], r["event_name"]) for r in visited] == [
        ("page", "Pricing"),
        ("track", "Demo Requested"),
    ]
    assert {(r["anonymous_id"], r["user_id"], r["is_cold"]) for r in visited} == {
        (anonymous_id, None, True)
    }

    signing_up = visit(browser, site, step="identify", userId=user_id, email=email, **common)
    assert signing_up["anonymousId"] == anonymous_id  # kept across the reload
    everything = wait_for(lambda: feed(server.database_url, account["account_id"]), 3)
    assert [r["event_type"] for r in everything] == ["page", "track", "identify"]
    assert {(r["email"], r["is_cold"]) for r in everything} == {(email, False)}
    assert {r["anonymous_id"] for r in everything} == {anonymous_id}
    # What the identify's page load asked for: the settings, then one post, all from here.
    requests = requests_made(browser)
    assert [(r["url"], r["status"]) for r in requests] == [
        (f"{server.url}/v1/projects/{key}/settings", 200),
        (f"{server.url}/v1/{'b' if batching == '1' else 'i'}", 200),
    ]


def test_an_origin_the_key_does_not_allow_stores_nothing(
    site: str, server: Server, browser: Any
) -> None:
    account = create_account(server.database_url)
    key = browser_key(server.database_url, account["account_id"], "https://www.acme.example")
    # The settings would not load from this origin: given inline, the library posts anyway.
    api_host = server.url.removeprefix("http://") + "/v1"
    visit(browser, site, step="browse", writeKey=key, cdn=server.url, apiHost=api_host)
    posts = wait_for(lambda: [r for r in requests_made(browser) if "/v1/" in r["url"]], 2)
    assert [r["url"].rsplit("/", 1)[-1] for r in posts][:2] == ["p", "t"], posts
    # A refused answer without Access-Control-Allow-Origin is a network error to the page.
    assert {r["status"] for r in posts} == {0}
    assert '"POST /v1/p HTTP/1.1" 403' in server.log()
    assert feed(server.database_url, account["account_id"]) == []
