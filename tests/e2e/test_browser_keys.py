"""Browser keys made by the real CLI, and what gunicorn answers with them (CONTRACT section 5).
Analytics.js itself, in a browser, is tests/e2e/test_browser.py."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.builders import track
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import BIN, Server, cli, count_signals, create_account, start_gunicorn, stop

SITE = "https://www.acme.example"


def receiver(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "receiver"), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": database_url},
    )


def create_browser_key(database_url: str, account_id: object, *origins: str) -> dict:
    flags = [arg for origin in origins for arg in ("--origin", origin)]
    done = cli(database_url, "create-key", str(account_id), "--browser", *flags)
    return json.loads(done.stdout)


def test_create_key_makes_a_browser_key_with_its_origins(postgres_url: str) -> None:
    account = create_account(postgres_url)
    created = create_browser_key(
        postgres_url, account["account_id"], "HTTPS://www.acme.example", "http://localhost:3000"
    )
    assert created["kind"] == "browser"
    assert created["allowed_origins"] == [SITE, "http://localhost:3000"]
    assert created["api_key"].startswith(f"rk_{account['account_id']}_")
    server_key = json.loads(cli(postgres_url, "create-key", str(account["account_id"])).stdout)
    assert (server_key["kind"], server_key["allowed_origins"]) == ("server", None)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--browser", "--origin", "https://acme.example/path"], "Not an origin"),
        (["--browser"], "at least one origin"),
        (["--browser", "--origin", SITE, "--secret", "a-long-secret"], "no secret"),
        (["--origin", SITE], "--browser"),
    ],
)
def test_create_key_refuses_what_a_browser_key_cannot_be(
    postgres_url: str, args: list[str], says: str
) -> None:
    account = create_account(postgres_url)
    done = receiver(postgres_url, "create-key", str(account["account_id"]), *args)
    assert done.returncode != 0
    assert says in done.stderr
    assert done.stdout == ""


def test_create_key_for_no_account_says_so(postgres_url: str) -> None:
    done = receiver(postgres_url, "create-key", "999999999", "--browser", "--origin", SITE)
    assert done.returncode == 1
    assert "no account 999999999" in done.stderr


@pytest.fixture(scope="module")
def limited(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker, so that its per-process count is the whole of the limit."""
    log = Path(tmp_path_factory.mktemp("gunicorn-limited")) / "server.log"
    running = start_gunicorn(postgres_url, log, workers=1, BROWSER_RATE_LIMIT="3/minute")
    yield running
    stop(running)


def test_gunicorn_answers_a_browser_key_with_cors_and_its_rate_limit(limited: Server) -> None:
    account = create_account(limited.database_url)
    key = create_browser_key(limited.database_url, account["account_id"], SITE)["api_key"]
    preflight = requests.options(
        f"{limited.url}/v1/t",
        headers={"Origin": SITE, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == SITE

    def send(origin: str) -> requests.Response:
        return requests.post(
            f"{limited.url}/v1/t",
            data=json.dumps({**track(), "writeKey": key}),
            headers={"Content-Type": "text/plain", "Origin": origin},
            timeout=10,
        )

    assert send("https://evil.example").status_code == 403  # refused before it is counted
    answers = [send(SITE) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["Access-Control-Allow-Origin"] == SITE
    over = answers[-1]
    assert 0 < int(over.headers["Retry-After"]) <= 60
    assert over.headers["Access-Control-Allow-Origin"] == SITE
    assert "Retry-After" in over.headers["Access-Control-Expose-Headers"]
    assert count_signals(limited.database_url, account["account_id"]) == 3
