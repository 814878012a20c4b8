"""Faults: the store stops, slows down or is shared; a worker dies mid-request. Whatever
happens, nothing acknowledged is lost and nothing is stored twice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
import requests
import sqlalchemy as sa

from receiver.identity.locks import LOCK_NAMESPACE
from tests.builders import identify, track
from tests.e2e.conftest import (
    Server,
    count_signals,
    create_account,
    http_request,
    query,
    send_all_at_once,
    start_gunicorn,
    stop,
)

SENDER_TIMEOUT_S = 5  # Segment's


def libpq(database_url: str) -> str:
    return sa.make_url(database_url).set(drivername="postgresql").render_as_string(False)


class AccountLockHeld:
    """Another session holds the account's rules lock, which every body takes first: the
    store looks stuck to requests."""

    def __init__(self, database_url: str, account_id: int) -> None:
        self.connection = psycopg.connect(libpq(database_url), autocommit=True)
        self.connection.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, account_id))

    def release(self) -> None:
        self.connection.close()


@pytest.fixture
def second_server(postgres_url: str, tmp_path: Path) -> Iterator[Server]:
    running = start_gunicorn(postgres_url, tmp_path / "second.log", workers=4)
    yield running
    stop(running)


def test_a_stuck_store_answers_503_before_the_sender_gives_up(server):
    account = create_account(server.database_url)
    held = AccountLockHeld(server.database_url, account["account_id"])
    try:
        started = time.monotonic()
        response = requests.post(
            server.url + account["webhook_path"],
            data=orjson.dumps(track()),
            timeout=SENDER_TIMEOUT_S + 5,
        )
        elapsed = time.monotonic() - started
    finally:
        held.release()
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit() and response.json()["message"]
    assert elapsed < SENDER_TIMEOUT_S
    assert count_signals(server.database_url, account["account_id"]) == 0


def test_worker_killed_mid_request_then_the_retry_stores_once(postgres_url, tmp_path):
    server = start_gunicorn(postgres_url, tmp_path / "killed.log", workers=2)
    try:
        account = create_account(postgres_url)
        body = orjson.dumps(track())
        held = AccountLockHeld(postgres_url, account["account_id"])
        outcome: dict[str, object] = {}

        def send() -> None:
            try:
                outcome["response"] = requests.post(
                    server.url + account["webhook_path"], data=body, timeout=SENDER_TIMEOUT_S
                )
            except requests.RequestException as error:
                outcome["error"] = error

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.7)  # the request now waits on the lock, in one of the workers
        for worker in _children(server.process.pid):
            os.kill(worker, signal.SIGKILL)
        sender.join(SENDER_TIMEOUT_S + 1)
        held.release()
        assert "error" in outcome, f"the sender got an answer: {outcome}"
        retry = _post_until_answered(server.url + account["webhook_path"], body)
        assert retry.status_code == 200
        assert count_signals(postgres_url, account["account_id"]) == 1
    finally:
        stop(server)


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


def _post_until_answered(url: str, body: bytes, deadline_s: float = 20) -> requests.Response:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            response = requests.post(url, data=body, timeout=SENDER_TIMEOUT_S)
            if response.status_code != 503:
                return response
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("no answer from the receiver")
        time.sleep(0.2)


def test_two_instances_over_one_database_hold_dedup_limits_and_rehydration(server, second_server):
    ports = [server.port, second_server.port]
    # Dedup: one event delivered fifty times, half to each instance.
    account = create_account(server.database_url)
    raw = http_request("POST", account["webhook_path"], orjson.dumps(track()))
    answers = _spread(ports, [raw] * 50)
    assert Counter(body["results"][0]["status"] for _, body in answers) == {
        "cold": 1,
        "duplicate": 49,
    }
    # Plan limit: 160 distinct events against a limit of 100.
    limited = create_account(server.database_url, "--signal-limit", "100")
    raws = [
        http_request("POST", limited["webhook_path"], orjson.dumps(track())) for _ in range(160)
    ]
    assert Counter(status for status, _ in _spread(ports, raws)) == {200: 100, 429: 60}
    assert count_signals(server.database_url, limited["account_id"]) == 100
    # Rehydration: tracks on both instances racing an identify.
    visitor = f"two-{uuid.uuid4()}"
    raws = [
        http_request("POST", account["webhook_path"], orjson.dumps(track(anonymousId=visitor)))
        for _ in range(100)
    ]
    raws.insert(
        50,
        http_request(
            "POST",
            account["webhook_path"],
            orjson.dumps(identify(f"{visitor}@example.com", anonymousId=visitor)),
        ),
    )
    assert {status for status, _ in _spread(ports, raws)} == {200}
    stranded = query(
        server.database_url,
        "SELECT id FROM signals WHERE account_id = :a "
        "AND anonymous_id = :v AND (is_cold OR lead_id IS NULL)",
        a=account["account_id"],
        v=visitor,
    )
    assert stranded == []


def _spread(ports: list[int], raws: list[bytes]) -> list[tuple[int, dict]]:
    """Every request in flight at once, alternating between the instances."""
    results: dict[int, list[tuple[int, dict]]] = {}

    def send(index: int) -> None:
        results[index] = send_all_at_once(ports[index], raws[index :: len(ports)])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(ports))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [answer for index in range(len(ports)) for answer in results[index]]


CLUSTER_VERSION = os.environ.get("PG_CLUSTER_VERSION") or (
    sorted(os.listdir("/etc/postgresql"))[-1] if os.path.isdir("/etc/postgresql") else ""
)


def _cluster(action: str) -> None:
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            CLUSTER_VERSION,
            "main",
            action,
            *(["-m", "fast"] if action == "stop" else []),
        ],
        check=True,
        timeout=60,
        capture_output=True,
    )


@pytest.mark.skipif(
    not (shutil.which("pg_ctlcluster") and CLUSTER_VERSION and os.geteuid() == 0),
    reason="needs the local Postgres cluster's own stop/start commands, as root",
)
def test_postgres_stopped_mid_load_loses_nothing_acknowledged(server):
    account = create_account(server.database_url)
    url = server.url + account["webhook_path"]
    events = [track(messageId=f"outage-{n}") for n in range(2_000)]
    statuses: Counter[int | str] = Counter()
    acknowledged: set[str] = set()
    acknowledged_at: list[float] = []
    lock = threading.Lock()
    stop_at = threading.Event()

    def sender(batch: list[dict]) -> None:
        session = requests.Session()
        for event in batch:
            body = orjson.dumps(event)
            deadline = time.monotonic() + 90
            while True:
                if len(acknowledged) > 600:
                    stop_at.set()
                try:
                    response = session.post(url, data=body, timeout=SENDER_TIMEOUT_S)
                    status: int | str = response.status_code
                except requests.Timeout:
                    status = "timeout"
                except requests.ConnectionError:
                    status = "connection error"
                with lock:
                    statuses[status] += 1
                    if status == 200:
                        acknowledged.add(event["messageId"])
                        acknowledged_at.append(time.monotonic())
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)  # retry as Segment does, sooner
            # A steady pace (at most 400 events/s in all), so that the load outlasts the
            # time the cluster takes to stop: some events must wait for the restart.
            time.sleep(0.02)

    threads = [threading.Thread(target=sender, args=(events[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    try:
        assert stop_at.wait(60), "the load never got going"
        stored_before = count_signals(server.database_url, account["account_id"])
        _cluster("stop")
        time.sleep(3)
    finally:
        _cluster("start")
    restarted = time.monotonic()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] > 0, "the outage was not seen: the test proved nothing"
    assert len(acknowledged) == 2_000
    assert stored_before >= 600
    stored = count_signals(server.database_url, account["account_id"])
    distinct = query(
        server.database_url,
        "SELECT count(DISTINCT message_id) AS n FROM signals WHERE account_id = :a",
        a=account["account_id"],
    )[0]["n"]
    assert stored == distinct == 2_000
    recovered = min(at for at in acknowledged_at if at > restarted) - restarted
    assert recovered < 10, f"first acknowledgement {recovered:.1f} s after the restart"
