"""The README's first command: `receiver serve` on SQLite, from an empty folder."""

from __future__ import annotations

import os
import re
import subprocess
import time

import orjson
import requests

from tests.builders import track
from tests.e2e.conftest import BIN, free_port


def test_serve_makes_a_first_account_on_sqlite_and_accepts_events(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    process = subprocess.Popen(
        [str(BIN / "receiver"), "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if match := re.search(r"webhook URL:\s+(\S+)", line):
                url = match.group(1)
        assert url is not None, "serve printed no webhook URL"
        assert (tmp_path / "receiver.db").exists()
        response = _post_when_up(url, orjson.dumps(track()))
        assert response.status_code == 200
        assert response.json()["results"][0]["status"] == "cold"
    finally:
        process.terminate()
        process.wait(timeout=10)
        rest = process.stdout.read()
        process.stdout.close()
    key = url.rsplit("/", 1)[1]
    assert "POST /webhook/" + key[:9] in rest  # the request log has the request...
    assert key not in rest  # ...but never the full key


def _post_when_up(url: str, body: bytes) -> requests.Response:
    deadline = time.monotonic() + 15
    while True:
        try:
            return requests.post(url, data=body, timeout=5)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
