"""Sealed secrets through the real CLI: a first run on SQLite, a key rotation on Postgres."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess

import orjson
import requests
from cryptography.fernet import Fernet

from tests.builders import track
from tests.conftest import REPO_ROOT, TEST_SECRET_KEY
from tests.e2e.conftest import BIN, cli, query, start_gunicorn, stop


def run(env, *args, input=None):
    return subprocess.run(
        [str(BIN / "receiver"), *args],
        cwd=REPO_ROOT,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], **env},
    )


def test_a_first_run_on_sqlite_seals_secrets_with_a_private_key_file(tmp_path):
    database = tmp_path / "receiver.db"
    env = {"DATABASE_URL": f"sqlite:///{database}"}  # and no SECRET_KEY
    assert run(env, "init-db").returncode == 0
    made = run(env, "create-account", "First", "--secret", "-", input="S3cret-first\n")
    assert made.returncode == 0, made.stderr
    for path in (database, tmp_path / "receiver.db.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    with sqlite3.connect(database) as connection:
        (stored,) = connection.execute("SELECT secret FROM api_keys").fetchone()
    assert stored.startswith("fernet:") and "S3cret-first" not in stored


def test_postgres_without_secret_key_refuses_a_secret_and_says_why(postgres_url):
    result = run(
        {"DATABASE_URL": postgres_url}, "create-account", "Nokey", "--secret", "S3cret-nokey"
    )
    assert result.returncode == 1 and "SECRET_KEY" in result.stderr


def test_rotating_the_secret_key_keeps_every_secret_working(postgres_url, tmp_path):
    account = json.loads(
        cli(postgres_url, "create-account", "Rotate", "--secret", "S3cret-rotated").stdout
    )
    before = _stored(postgres_url, account)
    new = Fernet.generate_key().decode()
    rotated = run(
        {"DATABASE_URL": postgres_url, "SECRET_KEY": f"{new},{TEST_SECRET_KEY}"},
        "rotate-secret-key",
    )
    assert rotated.returncode == 0 and "sealed with the first key" in rotated.stdout
    assert _stored(postgres_url, account) != before
    server = start_gunicorn(postgres_url, tmp_path / "server.log", workers=1, SECRET_KEY=new)
    try:
        url = server.url + account["webhook_path"]
        headers = {"X-Api-Secret": "S3cret-rotated"}
        body = orjson.dumps(track())
        assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 200
        assert requests.post(url, data=body, timeout=10).status_code == 401
    finally:
        stop(server)
        # Back to the suite's key: the database is shared with the tests that follow.
        run(
            {"DATABASE_URL": postgres_url, "SECRET_KEY": f"{TEST_SECRET_KEY},{new}"},
            "rotate-secret-key",
        )


def _stored(database_url, account):
    rows = query(
        database_url, "SELECT secret FROM api_keys WHERE account_id = :a", a=account["account_id"]
    )
    return rows[0]["secret"]
