"""`receiver serve` and the command itself, as a new user runs them: the development server's
log to a file, `--help` and `--version`."""

from __future__ import annotations

import os
import re
import subprocess
import time
from importlib.metadata import version

import requests

from tests.e2e.conftest import BIN, free_port


def _serve(folder, log_file):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    process = subprocess.Popen(
        [str(BIN / "receiver"), "serve", "--port", str(port)],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    printed = {}
    deadline = time.monotonic() + 30
    while len(printed) < 2 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if match := re.search(r"(webhook URL|admin token):\s+(\S+)", line):
            printed[match.group(1)] = match.group(2)
    assert len(printed) == 2, "serve printed no webhook URL and admin token"
    return process, f"http://127.0.0.1:{port}", printed["admin token"]


def _get_when_up(url, **kwargs):
    deadline = time.monotonic() + 15
    while True:
        try:
            return requests.get(url, timeout=5, **kwargs)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_dev_servers_log_file_has_no_query_strings_and_no_colour_codes(tmp_path):
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        process, base, token = _serve(tmp_path, log_file)
        try:
            headers = {"Authorization": f"Bearer {token}"}
            leads = _get_when_up(f"{base}/admin/leads?email=ada@example.com", headers=headers)
            assert leads.status_code == 404
            assert requests.get(f"{base}/nowhere?q=secret", timeout=5).status_code == 404
        finally:
            process.terminate()
            process.wait(timeout=10)
            process.stdout.close()
    log = log_path.read_text()
    assert '"GET /admin/leads HTTP/1.1" 404' in log and '"GET /nowhere HTTP/1.1" 404' in log
    assert "ada@example.com" not in log and "secret" not in log
    assert "\x1b[" not in log and "development server" in log


def test_version_names_the_receiver_and_help_offers_its_own_commands_only():
    shown = subprocess.run(
        [str(BIN / "receiver"), "--version"], capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == f"receiver {version('receiver')}"
    assert "Flask" not in shown.stdout
    helped = subprocess.run(
        [str(BIN / "receiver"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "serve" in helped and "init-db" in helped and "create-account" in helped
    for flask_option in ("--env-file", "--app", "--debug"):
        assert flask_option not in helped
