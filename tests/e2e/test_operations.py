"""Operations under gunicorn: metrics summed over workers, request ids, JSON and plain logs,
the delivery log written by the workers' background threads."""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import pty
import select
import struct
import subprocess
import termios
import time
from urllib.parse import unquote

import orjson
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import track
from tests.e2e.conftest import BIN, cli, create_account, start_gunicorn, stop

METRICS_TOKEN = "e2e-metrics-token"


def metric(text, name, **labels):
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def raw_post(port, path, body=b"{}", headers=None):
    """http.client sends the path exactly as given (requests would normalise it)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


@pytest.fixture
def metrics_dir(tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    # A previous server's values: the new one must not add them up.
    (folder / "counter_999999.db").write_bytes(b"left over")
    return folder


@pytest.fixture
def metered(postgres_url, tmp_path, metrics_dir):
    server = start_gunicorn(
        postgres_url,
        tmp_path / "server.log",
        workers=4,
        METRICS_TOKEN=METRICS_TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    yield server
    stop(server)


def test_metrics_are_summed_over_every_worker(metered, metrics_dir):
    assert not (metrics_dir / "counter_999999.db").exists()
    account = create_account(metered.database_url)
    url = metered.url + account["webhook_path"]
    for _ in range(40):
        # A new connection each time, so that the workers take turns.
        assert requests.post(url, data=orjson.dumps(track()), timeout=10).ok
    auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert requests.get(metered.url + "/metrics", timeout=10).status_code == 401
    # Each read may be answered by another worker: every one sees the whole sum.
    for _ in range(8):
        text = requests.get(metered.url + "/metrics", headers=auth, timeout=10).text
        route = "/webhook/<api_key>"
        assert metric(text, "receiver_http_requests_total", route=route, status="200") == 40
        assert metric(text, "receiver_http_request_duration_seconds_count", route=route) == 40
        assert metric(text, "receiver_events_total", outcome="cold") == 40
        assert account["api_key"][:12] not in text
    # The 40 requests went through more than one worker, each writing its own file.
    assert len(list(metrics_dir.glob("counter_*.db"))) >= 2


def test_json_logs_are_one_object_a_line_with_no_secret(postgres_url, tmp_path):
    server = start_gunicorn(postgres_url, tmp_path / "json.log", workers=2, LOG_FORMAT="json")
    try:
        account = create_account(postgres_url)
        key, token = account["api_key"], account["admin_token"]
        ok = requests.post(
            server.url + account["webhook_path"],
            data=orjson.dumps(track()),
            headers={"X-Request-Id": "e2e-json-1"},
            timeout=10,
        )
        assert ok.status_code == 200 and ok.headers["X-Request-Id"] == "e2e-json-1"
        # Not every event stored: the view writes an INFO line of its own, in the request.
        requests.post(
            server.url + account["webhook_path"],
            data=orjson.dumps([track(), track(properties={"x": "y" * 40_000})]),
            headers={"X-Request-Id": "e2e-json-2"},
            timeout=10,
        )
        requests.post(f"{server.url}/v1/batch", data=b"{}", auth=(key, ""), timeout=10)
        encoded = key[:3] + "".join(f"%{ord(c):02X}" for c in key[3:])
        raw_post(server.port, f"/webhook/{encoded}%0Aforged", orjson.dumps(track()))
        requests.get(
            f"{server.url}/admin/leads",
            params={"email": "json.never@example.com"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
    finally:
        stop(server)
    lines = [line for line in server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line parses
    for record in records:
        assert {"time", "level", "message"} <= set(record), record
    text = unquote(server.log())
    assert key not in text and key[-16:] not in text and token[-16:] not in text
    assert "json.never" not in text
    access = [r for r in records if "duration_ms" in r]
    first = next(r for r in access if r["request_id"] == "e2e-json-1")
    assert first["method"] == "POST" and first["status"] == 200
    assert first["path"].startswith("/webhook/rk_") and first["path"].endswith("…")
    assert any(r["path"] == "/admin/leads" for r in access)
    app_line = next(r for r in records if r["message"].startswith("received=2"))
    assert app_line["request_id"] == "e2e-json-2" and app_line["level"] == "INFO"
    assert any(r["message"].startswith("Booting worker") for r in records)


def test_a_newline_in_a_path_writes_no_forged_plain_line(server):
    account = create_account(server.database_url)
    key = account["api_key"]
    encoded = key[:3] + "".join(f"%{ord(c):02X}" for c in key[3:])
    forged = "%0A127.0.0.1%20%22GET%20/admin/forged%20HTTP/1.1%22%20200"
    raw_post(server.port, f"/webhook/{encoded}{forged}", orjson.dumps(track()))
    raw_post(server.port, f"/nowhere{forged}", b"{}", {"X-Request-Id": "e2e-forge"})
    deadline = time.monotonic() + 5
    while "e2e-forge" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = server.log().splitlines()
    # The forged text stays inside the line of the request that carried it.
    forged_lines = [line for line in lines if "/admin/forged" in line]
    assert len(forged_lines) == 2
    assert all(line.startswith('127.0.0.1 "POST /') for line in forged_lines)
    assert any("/nowhere\\n127.0.0.1" in line and "e2e-forge" in line for line in lines)
    assert key not in server.log()


def test_deliveries_are_written_by_the_workers(server):
    account = create_account(server.database_url)
    sent = track("Delivered")
    response = requests.post(
        server.url + account["webhook_path"], data=orjson.dumps(sent), timeout=10
    )
    assert response.status_code == 200
    headers = {"Authorization": f"Bearer {account['admin_token']}"}
    deadline = time.monotonic() + 10
    found = []
    while not found and time.monotonic() < deadline:
        found = requests.get(f"{server.url}/admin/deliveries", headers=headers, timeout=10).json()[
            "deliveries"
        ]
        time.sleep(0.2)
    (delivery,) = found
    assert delivery["request_id"] == response.headers["X-Request-Id"]
    assert delivery["results"][0]["messageId"] == sent["messageId"]
    assert delivery["results"][0]["event"] == "Delivered"


def _purge_setup(tmp_path):
    from freezegun import freeze_time

    from receiver import deliveries
    from receiver.app import create_app
    from receiver.config import Settings

    database_url = f"sqlite:///{tmp_path / 'purge.db'}"
    cli(database_url, "init-db")
    account = create_account(database_url)
    app = create_app(Settings(database_url=database_url))
    with freeze_time("2020-01-01T00:00:00Z"):
        body = orjson.dumps([track() for _ in range(7)])
        assert app.test_client().post(account["webhook_path"], data=body).status_code == 200
    deliveries.writer_of(app).close()
    return database_url


def test_purge_cold_shows_a_progress_bar_on_a_terminal(tmp_path):
    database_url = _purge_setup(tmp_path)
    controller, terminal = pty.openpty()
    # A terminal of 24 lines of 100 columns (a new pty has none, and nothing fits in it).
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        result = subprocess.run(
            [str(BIN / "receiver"), "purge-cold"],
            stdout=subprocess.PIPE,
            stderr=terminal,
            env={**os.environ, "DATABASE_URL": database_url},
            timeout=60,
            check=True,
            text=True,
        )
        os.close(terminal)
        terminal = -1
        shown = b""
        while chunk := _read_available(controller):
            shown += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert "7/7" in shown.decode() and "100%" in shown.decode()
    # The line per chunk is what a terminal does not get; the summary stays on stdout.
    assert result.stdout.strip() == "purged 7 cold signals"


def _read_available(fd):
    try:
        return os.read(fd, 65536) if select.select([fd], [], [], 1)[0] else b""
    except OSError:  # the other end closed: nothing more to read
        return b""
