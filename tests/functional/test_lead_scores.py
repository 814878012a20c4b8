"""Scores that fade (CONTRACT sections 4 and 6): lead_summary.score_recent, and
GET /admin/leads?order=score, both by event time with a window of SCORE_WINDOW_DAYS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from freezegun import freeze_time

from receiver import db
from receiver.app import create_app
from receiver.config import Settings
from tests.builders import identify
from tests.conftest import close_app
from tests.functional.test_admin_api import DEMO_RULE, auth, form, send
from tests.functional.test_webhook import BOTH_STORES

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def at(when):
    stamp = when.isoformat().replace("+00:00", "Z")
    return {"timestamp": stamp, "originalTimestamp": stamp}


def hot_and_cold(client, account, now):
    """hot: a score of 40 a day ago and 40 at 45 days; cold: 3 x 40 at 100 days, seen today."""
    rule = {**DEMO_RULE, "signal": {"name": "Demo Requested", "score": 40}}
    assert client.post("/admin/rules", json=rule, headers=auth(account)).status_code == 201
    days = [("hot", 1), ("hot", 45), ("cold", 100), ("cold", 100), ("cold", 100)]
    send(
        client,
        account,
        *[form(f"{who}@example.com", **at(now - timedelta(days=d))) for who, d in days],
        identify("cold@example.com", **at(now)),
    )


def leads(client, account, query=""):
    response = client.get(f"/admin/leads?per_page=10{query}", headers=auth(account))
    assert response.status_code == 200, response.json
    return [(lead["email"], lead["score"], lead["score_recent"]) for lead in response.json["leads"]]


@BOTH_STORES
def test_leads_by_score_rank_who_is_hot_now(client, account):
    with freeze_time(NOW):
        hot_and_cold(client, account, NOW)
        assert leads(client, account) == [
            ("cold@example.com", 120, 0.0),
            ("hot@example.com", 80, 59.56),  # 40 * (1 - 1 / 90) + 40 * (1 - 45 / 90)
        ]
        assert leads(client, account, "&order=score") == [
            ("hot@example.com", 80, 59.56),
            ("cold@example.com", 120, 0.0),
        ]
        lead = client.get("/admin/leads?email=hot@example.com", headers=auth(account)).json
        assert (lead["score"], lead["score_recent"]) == (80, 59.56)
    with freeze_time(NOW + timedelta(days=30)):  # 31 and 75 days old now
        assert leads(client, account, "&order=score")[0] == ("hot@example.com", 80, 32.89)


@BOTH_STORES
def test_the_window_is_a_setting(database_url):
    app = create_app(Settings(database_url=database_url, score_window_days=60))
    try:
        from tests.conftest import make_account

        account = make_account(db.engine_of(app))
        with freeze_time(NOW):
            hot_and_cold(app.test_client(), account, NOW)
            top = leads(app.test_client(), account, "&order=score")[0]
    finally:
        close_app(app)
    assert top == ("hot@example.com", 80, 49.33)  # 40 * 59 / 60 + 40 * 15 / 60


def test_an_unknown_order_is_422(client, account):
    response = client.get("/admin/leads?order=hottest", headers=auth(account))
    assert response.status_code == 422 and "order" in response.json["errors"]


def summary(connection, account):
    return {
        row["email"]: (row["score"], float(row["score_recent"]))
        for row in connection.execute(
            sa.text("SELECT * FROM lead_summary WHERE account_id = :a"),
            {"a": account.account_id},
        ).mappings()
    }


def test_lead_summary_fades_each_score_over_the_window_by_event_time(client, account, engine):
    hot_and_cold(client, account, datetime.now(UTC))
    with engine.connect() as connection:
        found = summary(connection, account)
        assert found["cold@example.com"] == (120, 0.0)
        assert found["hot@example.com"][0] == 80
        assert found["hot@example.com"][1] == pytest.approx(59.56, abs=0.02)
        # init-db writes SCORE_WINDOW_DAYS into the view's window: here as another setting
        # would, in a transaction that is rolled back.
        connection.rollback()
        with connection.begin() as transaction:
            connection.exec_driver_sql(db.score_window_sql(30))
            assert summary(connection, account)["hot@example.com"][1] == pytest.approx(
                38.67, abs=0.02
            )
            transaction.rollback()


def test_init_db_writes_the_window_setting_into_the_sqlite_view(tmp_path):
    url = f"sqlite:///{tmp_path / 'window.db'}"
    engine = db.make_engine(Settings(database_url=url))
    lines: list[str] = []
    db.upgrade_schema(engine, lines.append, score_window_days=30)
    engine.dispose()
    assert "views: score_recent fades over 30 days (SCORE_WINDOW_DAYS)" in lines
    app = create_app(Settings(database_url=url))
    try:
        from tests.conftest import make_account

        account = make_account(db.engine_of(app))
        hot_and_cold(app.test_client(), account, datetime.now(UTC))
        with db.engine_of(app).connect() as connection:
            found = summary(connection, account)
    finally:
        close_app(app)
    assert found["cold@example.com"] == (120, 0.0)
    # 40 * (1 - 1 / 30), and nothing of the score 45 days old
    assert found["hot@example.com"][1] == pytest.approx(38.67, abs=0.02)


def test_a_window_under_a_day_is_refused():
    with pytest.raises(ValueError, match="SCORE_WINDOW_DAYS"):
        db.score_window_sql(0)


def test_banding_example_puts_each_lead_in_its_band(client, account, engine):
    from tests.functional.test_analyst_sql import run_example

    hot_and_cold(client, account, datetime.now(UTC))
    bands = run_example(engine, "lead_bands", account_id=account.account_id)
    assert [(row["email"], row["band"]) for row in bands] == [
        ("hot@example.com", "warm"),
        ("cold@example.com", "cold"),
    ]


def test_init_db_writes_the_window_setting_into_the_view(postgres_url):
    app = create_app(Settings(database_url=postgres_url, score_window_days=45))
    engine = db.engine_of(app)
    try:
        result = app.test_cli_runner().invoke(args=["init-db"])
        assert result.exit_code == 0, result.output
        assert "score_recent fades over 45 days (SCORE_WINDOW_DAYS)" in result.output
        with engine.connect() as connection:
            window = connection.exec_driver_sql("SELECT receiver_score_window_days()").scalar()
        assert window == 45
    finally:
        with engine.begin() as connection:  # the other tests' window, the default
            connection.exec_driver_sql(db.score_window_sql(90))
        engine.dispose()
