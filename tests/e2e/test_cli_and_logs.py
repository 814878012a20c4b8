"""The real CLI and what the server writes to its logs."""

from __future__ import annotations

import http.client
import subprocess
import time
from urllib.parse import unquote

import orjson
import requests

from tests.builders import track
from tests.conftest import TEST_SECRET_KEY
from tests.e2e.conftest import cli, create_account


def test_init_db_is_idempotent_and_prints_a_line_per_step(postgres_url):
    output = cli(postgres_url, "init-db").stdout
    assert "schema: at revision" in output
    assert "views: signal_feed, lead_summary" in output
    assert cli(postgres_url, "init-db").stdout == output


def test_create_account_prints_one_json_object(postgres_url):
    account = create_account(postgres_url, "--plan", "pro", "--signal-limit", "5")
    assert set(account) == {"account_id", "api_key", "admin_token", "webhook_path"}
    assert account["webhook_path"] == f"/webhook/{account['api_key']}"


def test_create_account_refuses_a_secret_the_admin_api_would_refuse(postgres_url):
    result = subprocess.run(
        ["receiver", "create-account", "Short secret", "--secret", "s3cret"],
        capture_output=True,
        text=True,
        env={"DATABASE_URL": postgres_url, "PATH": _path()},
    )
    assert result.returncode == 2 and "8 to 200 characters" in result.stderr
    assert result.stdout == ""


def test_revoked_key_answers_401_from_then_on(server):
    account = create_account(server.database_url)
    url = server.url + account["webhook_path"]
    assert requests.post(url, data=orjson.dumps(track()), timeout=10).status_code == 200
    assert "revoked" in cli(server.database_url, "revoke-key", account["api_key"]).stdout
    assert requests.post(url, data=orjson.dumps(track()), timeout=10).status_code == 401


def test_revoking_an_unknown_key_fails(postgres_url):
    result = subprocess.run(
        ["receiver", "revoke-key", "rk_1_nope"],
        capture_output=True,
        text=True,
        env={"DATABASE_URL": postgres_url, "PATH": _path()},
    )
    assert result.returncode != 0
    assert "no such API key" in result.stderr


def _path():
    import os
    import sys

    return os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


def test_gunicorn_logs_never_hold_a_full_api_key_or_an_email(server):
    account = create_account(server.database_url)
    key = account["api_key"]
    requests.post(server.url + account["webhook_path"], data=orjson.dumps(track()), timeout=10)
    requests.post(
        f"{server.url}/v1/batch",
        data=orjson.dumps({"batch": [track()]}),
        auth=(key, ""),
        timeout=10,
    )
    requests.post(server.url + account["webhook_path"] + "/v1/batch", data=b"{bad", timeout=10)
    # The app decodes the path, so a key spelled with percent escapes is still the key.
    # (http.client sends the path as given; requests would decode the escapes first.)
    encoded = key[:3] + "".join(f"%{ord(c):02X}" for c in key[3:])
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("POST", f"/webhook/{encoded}", body=orjson.dumps(track()))
    assert connection.getresponse().status == 200
    connection.close()
    requests.get(
        f"{server.url}/admin/leads",
        params={"email": "logged.never@example.com"},
        headers={"Authorization": f"Bearer {account['admin_token']}"},
        timeout=10,
    )
    # gunicorn writes the access line once the answer is sent: wait for it, under load too.
    deadline = time.monotonic() + 10
    while "GET /admin/leads HTTP/1.1" not in (log := server.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "GET /admin/leads HTTP/1.1" in log and "logged.never" not in unquote(log)
    assert f"/webhook/{key[:9]}" in log  # the access log does have the requests
    assert key not in log and key[-16:] not in unquote(log)


def test_purge_cold_command_reports_what_it_removed(tmp_path):
    from freezegun import freeze_time

    from receiver.app import create_app
    from receiver.config import Settings

    database_url = f"sqlite:///{tmp_path / 'purge.db'}"
    cli(database_url, "init-db")
    account = create_account(database_url)
    app = create_app(Settings(database_url=database_url))
    with freeze_time("2020-01-01T00:00:00Z"):
        response = app.test_client().post(
            account["webhook_path"], data=orjson.dumps([track(), track(), track()])
        )
        assert response.status_code == 200
    output = cli(database_url, "purge-cold").stdout
    assert f"account {account['account_id']}: 3 cold signals" in output
    assert output.strip().endswith("purged 3 cold signals")
    assert cli(database_url, "purge-cold", "--older-than", "0").stdout.strip() == (
        "purged 0 cold signals"
    )


def _secret_needed(server, account, secret):
    url = server.url + account["webhook_path"]
    without = requests.post(url, data=orjson.dumps(track()), timeout=10)
    right = requests.post(
        url, data=orjson.dumps(track()), headers={"X-Api-Secret": secret}, timeout=10
    )
    return without.status_code == 401 and right.status_code == 200


def test_create_account_reads_the_secret_from_standard_input(server):
    result = subprocess.run(
        ["receiver", "create-account", "Piped secret", "--secret", "-"],
        input="S3cret-from-stdin\n",
        capture_output=True,
        text=True,
        env={"DATABASE_URL": server.database_url, "PATH": _path(), "SECRET_KEY": TEST_SECRET_KEY},
        check=True,
    )
    assert _secret_needed(server, orjson.loads(result.stdout), "S3cret-from-stdin")


def test_create_account_reads_the_secret_from_the_environment(server):
    result = subprocess.run(
        ["receiver", "create-account", "Env secret"],
        capture_output=True,
        text=True,
        env={
            "DATABASE_URL": server.database_url,
            "PATH": _path(),
            "RECEIVER_KEY_SECRET": "S3cret-from-env",
            "SECRET_KEY": TEST_SECRET_KEY,
        },
        check=True,
    )
    assert _secret_needed(server, orjson.loads(result.stdout), "S3cret-from-env")


def test_create_account_refuses_empty_standard_input_for_the_secret(postgres_url):
    result = subprocess.run(
        ["receiver", "create-account", "No secret", "--secret", "-"],
        input="",
        capture_output=True,
        text=True,
        env={"DATABASE_URL": postgres_url, "PATH": _path()},
    )
    assert result.returncode == 2 and "standard input held no secret" in result.stderr
