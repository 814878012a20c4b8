"""Races against gunicorn (several workers) and Postgres, over HTTP."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
import requests

from tests.builders import track
from tests.e2e.conftest import count_signals, create_account, http_request, send_all_at_once


def test_fifty_concurrent_deliveries_of_one_event_store_exactly_one_row(server):
    account = create_account(server.database_url)
    body = orjson.dumps(track())
    raw = http_request("POST", account["webhook_path"], body)
    answers = send_all_at_once(server.port, [raw] * 50)
    assert [status for status, _ in answers] == [200] * 50
    statuses = Counter(body["results"][0]["status"] for _, body in answers)
    assert statuses == {"cold": 1, "duplicate": 49}
    assert count_signals(server.database_url, account["account_id"]) == 1


def test_concurrent_senders_never_exceed_the_plan_limit(server):
    account = create_account(server.database_url, "--signal-limit", "100")
    path = account["webhook_path"]
    # 8 senders x 20 distinct events, all in flight at once.
    raws = [http_request("POST", path, orjson.dumps(track())) for _ in range(8 * 20)]
    answers = send_all_at_once(server.port, raws)
    statuses = Counter(status for status, _ in answers)
    assert statuses == {200: 100, 429: 60}
    assert all(b["message"] for s, b in answers if s == 429)
    assert count_signals(server.database_url, account["account_id"]) == 100


def test_batch_retried_after_a_429_stores_nothing_twice(server):
    account = create_account(server.database_url, "--signal-limit", "5")
    url = server.url + account["webhook_path"]
    batch = [track() for _ in range(8)]
    first = requests.post(url, data=orjson.dumps(batch), timeout=10)
    assert first.status_code == 429 and "Retry-After" in first.headers
    retries = send_all_at_once(
        server.port, [http_request("POST", account["webhook_path"], orjson.dumps(batch))] * 10
    )
    assert {status for status, _ in retries} == {429}
    assert all(body["stored"] == 0 for _, body in retries)
    assert count_signals(server.database_url, account["account_id"]) == 5


@pytest.mark.parametrize("workers", [2])
def test_unreachable_store_answers_503_quickly_and_stores_nothing(tmp_path, workers):
    from tests.e2e.conftest import start_gunicorn, stop

    dead = start_gunicorn(
        "postgresql+psycopg://postgres@127.0.0.1:9/none", tmp_path / "dead.log", workers=workers
    )
    try:
        response = requests.post(
            f"{dead.url}/webhook/rk_1_aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            data=orjson.dumps(track()),
            timeout=5,
        )
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        assert response.elapsed.total_seconds() < 5
    finally:
        stop(dead)
