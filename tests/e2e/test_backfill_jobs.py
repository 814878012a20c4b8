"""Backfills as jobs under gunicorn: thirty rules at once starve nobody (issue 18 item 6),
a backfill left by a crash resumes without a request, and `receiver run-backfills` runs what
is pending."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
import requests
import sqlalchemy as sa

from receiver.app import create_app
from receiver.config import Settings
from receiver.db import engine_of
from tests.builders import track
from tests.conftest import REPO_ROOT, make_account
from tests.e2e.conftest import (
    BIN,
    cli,
    create_account,
    http_request,
    query,
    send_all_at_once,
    start_gunicorn,
    stop,
)
from tests.functional.test_admin_api import DEMO_RULE, form

RULES = 30
# Segment gives up after 5 s. A webhook call that arrives with the thirty creations waits for
# a sync worker behind them: with a thread per backfill holding connections of the request
# pool, the creations took 7.2 s to answer and that call 6.6 s (10.9 s in the report); with
# one worker thread on its own pool, 1.8 s and 1.8 s (3 workers, a loaded 2-core machine).
MAX_LATENCY_S = 5.0


def bearer(account):
    return {"Authorization": f"Bearer {account['admin_token']}"}


def post_events(server, account, events):
    url = server.url + account["webhook_path"]
    for start in range(0, len(events), 1_000):
        batch = orjson.dumps(events[start : start + 1_000])
        assert requests.post(url, data=batch, timeout=30).status_code == 200


def backfills(database_url, account):
    return query(
        database_url,
        "SELECT id, backfill_status AS status, backfill_mapped AS mapped FROM rules "
        "WHERE account_id = :a ORDER BY id",
        a=account["account_id"],
    )


def wait_until_done(database_url, account, timeout=60):
    """Watches the store, not the API: nothing but the workers may run the backfills."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = backfills(database_url, account)
        if rows and all(row["status"] == "done" for row in rows):
            return rows
        time.sleep(0.2)
    raise AssertionError(f"backfills not done: {backfills(database_url, account)}")


@pytest.fixture
def few_workers(postgres_url, tmp_path):
    # Few workers, as a small deployment has: backfill threads once outnumbered their pool.
    running = start_gunicorn(postgres_url, tmp_path / "server.log", workers=3, BACKFILL_POLL_S="1")
    yield running
    stop(running)


def test_thirty_rules_at_once_neither_fail_nor_stall_another_accounts_ingestion(few_workers):
    server = few_workers
    busy, other = create_account(server.database_url), create_account(server.database_url)
    forms = [form(f"load-{n}@example.com") for n in range(50)]
    post_events(server, busy, forms + [track("Page Scrolled") for _ in range(2_950)])
    answered, stop_ingesting = [], threading.Event()

    def ingest() -> None:
        while not stop_ingesting.is_set():
            began = time.monotonic()
            response = requests.post(
                server.url + other["webhook_path"], data=orjson.dumps(track()), timeout=30
            )
            answered.append((response.status_code, time.monotonic() - began))

    ingestion = threading.Thread(target=ingest)
    ingestion.start()
    try:
        began = time.monotonic()
        creations = send_all_at_once(
            server.port,
            [
                http_request(
                    "POST",
                    "/admin/rules",
                    orjson.dumps({**DEMO_RULE, "name": f"rule {n}", "priority": n}),
                    bearer(busy),
                )
                for n in range(RULES)
            ],
        )
        answered_in = time.monotonic() - began
        rows = wait_until_done(server.database_url, busy)
    finally:
        stop_ingesting.set()
        ingestion.join(30)
    assert [status for status, _ in creations] == [201] * RULES, server.log()[-3000:]
    assert answered_in < MAX_LATENCY_S
    assert len(rows) == RULES and sum(row["mapped"] for row in rows) == 50
    statuses = {status for status, _ in answered}
    slowest = max(latency for _, latency in answered)
    assert statuses == {200} and slowest < MAX_LATENCY_S, (statuses, slowest, len(answered))


def test_a_backfill_left_by_a_crash_resumes_without_a_request(own_database, tmp_path):
    # The store as a crash left it: a rule whose backfill was running, its runner gone.
    app = create_app(Settings(database_url=own_database, backfill_worker=0))
    engine = engine_of(app)
    try:
        made = make_account(engine)
        client = app.test_client()
        client.post(f"/webhook/{made.api_key}", data=orjson.dumps(form("crash@example.com")))
        headers = {"Authorization": f"Bearer {made.admin_token}"}
        assert client.post("/admin/rules", json=DEMO_RULE, headers=headers).status_code == 201
        long_ago = datetime.now(UTC) - timedelta(minutes=5)
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "UPDATE rules SET backfill_status = 'running', backfill_started_at = :t, "
                    "backfill_heartbeat_at = :t WHERE account_id = :a"
                ),
                {"t": long_ago, "a": made.account_id},
            )
    finally:
        engine.dispose()
    account = {"account_id": made.account_id}
    assert [row["status"] for row in backfills(own_database, account)] == ["running"]
    # A server starts; nothing is sent to it but the health checks of start_gunicorn.
    server = start_gunicorn(own_database, tmp_path / "server.log", workers=2)
    try:
        rows = wait_until_done(own_database, account, timeout=60)
    finally:
        stop(server)
    assert rows[0]["mapped"] == 1


@pytest.fixture
def own_database(postgres_url):
    """A database of this test's own, made by `receiver init-db`: no other server's backfill
    worker may take its jobs."""
    base = sa.make_url(postgres_url)
    name = f"{base.database}_cli"
    libpq = base.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(libpq, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(hide_password=False)
    cli(url, "init-db")
    yield url
    with psycopg.connect(libpq, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_run_backfills_runs_the_pending_ones_when_no_worker_does(own_database, tmp_path):
    server = start_gunicorn(own_database, tmp_path / "server.log", workers=2, BACKFILL_WORKER="0")
    try:
        account = create_account(server.database_url)
        post_events(server, account, [form("cli@example.com"), track()])
        created = requests.post(
            server.url + "/admin/rules", json=DEMO_RULE, headers=bearer(account), timeout=10
        ).json()
        time.sleep(1)
        read = requests.get(
            f"{server.url}/admin/rules/{created['id']}", headers=bearer(account), timeout=10
        ).json()
        assert read["backfill"]["status"] == "pending"
        output = cli(server.database_url, "run-backfills").stdout
        assert f"backfill of rule {created['id']} (account {account['account_id']}): done" in output
        done = requests.get(
            f"{server.url}/admin/rules/{created['id']}", headers=bearer(account), timeout=10
        ).json()
        assert (done["backfill"]["status"], done["backfill"]["mapped"]) == ("done", 1)
        # --watch keeps running, as a worker process of its own, and takes up what comes.
        watcher = subprocess.Popen(
            [str(BIN / "receiver"), "run-backfills", "--watch"],
            cwd=REPO_ROOT,
            env={**os.environ, "DATABASE_URL": server.database_url, "BACKFILL_POLL_S": "0.5"},
        )
        try:
            requests.patch(
                f"{server.url}/admin/rules/{created['id']}",
                json={"signal": {"name": "Demo", "score": 1}},
                headers=bearer(account),
                timeout=10,
            )
            rows = wait_until_done(server.database_url, account, timeout=30)
            assert watcher.poll() is None  # still watching
        finally:
            watcher.terminate()
            watcher.wait(15)
        assert [row["status"] for row in rows] == ["done"]
    finally:
        stop(server)
