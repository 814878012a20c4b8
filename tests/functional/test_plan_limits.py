"""Plan limits: what fits is stored, the rest is a 429 that a retry resolves."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from freezegun import freeze_time

from tests.builders import track
from tests.conftest import make_account
from tests.functional.test_webhook import BOTH_STORES, signal_count


def post(client, key, body):
    return client.post(f"/webhook/{key}", data=orjson.dumps(body))


@BOTH_STORES
def test_batch_over_the_limit_stores_what_fits_and_answers_429(client, engine):
    account = make_account(engine, signal_limit=3)
    batch = [track() for _ in range(5)]
    response = post(client, account.api_key, batch)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert "limit" in response.json["message"]
    assert [r["status"] for r in response.json["results"]] == ["cold"] * 3 + ["rejected"] * 2
    assert signal_count(engine, account.account_id) == 3


def test_retry_of_a_limited_batch_stores_nothing_twice(client, engine):
    account = make_account(engine, signal_limit=3)
    batch = [track() for _ in range(5)]
    post(client, account.api_key, batch)
    retry = post(client, account.api_key, batch)
    assert retry.status_code == 429
    assert [r["status"] for r in retry.json["results"]] == ["duplicate"] * 3 + ["rejected"] * 2
    assert signal_count(engine, account.account_id) == 3


def test_duplicates_are_free_at_the_limit(client, engine):
    account = make_account(engine, signal_limit=2)
    batch = [track(), track()]
    assert post(client, account.api_key, batch).status_code == 200
    again = post(client, account.api_key, batch)
    assert again.status_code == 200
    assert again.json["duplicates"] == 2


def test_an_upgrade_lets_the_retry_in(client, engine):
    import sqlalchemy as sa

    account = make_account(engine, signal_limit=1)
    batch = [track(), track()]
    assert post(client, account.api_key, batch).status_code == 429
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE accounts SET signal_limit = 10 WHERE id = :a"),
            {"a": account.account_id},
        )
    retry = post(client, account.api_key, batch)
    assert retry.status_code == 200
    assert [r["status"] for r in retry.json["results"]] == ["duplicate", "cold"]


@pytest.mark.parametrize("database_url", ["postgres", "sqlite"], indirect=True)
def test_limit_reached_on_31_january_is_free_again_on_1_february(client, engine):
    account = make_account(engine, signal_limit=2, now=datetime(2026, 1, 1, tzinfo=UTC))
    with freeze_time("2026-01-31T23:59:30Z"):
        assert post(client, account.api_key, [track(), track()]).status_code == 200
        limited = post(client, account.api_key, track())
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "30"
    with freeze_time("2026-02-01T00:00:01Z"):
        assert post(client, account.api_key, track()).status_code == 200
