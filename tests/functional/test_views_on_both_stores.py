"""The analyst views and the README's queries on both stores: SQLite, the embedded default,
has the views Postgres has, with the same columns."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from receiver import db
from receiver.config import Settings
from tests.builders import identify, track
from tests.conftest import REPO_ROOT
from tests.functional.test_analyst_sql import recent
from tests.functional.test_identity import send
from tests.functional.test_webhook import BOTH_STORES

VIEWS = ("signal_feed", "lead_summary", "cold_storage", "blocked_identifiers")
VIEWS += ("message_id_conflicts", "unlinked_identifiers")
EXAMPLES = REPO_ROOT / "sql" / "examples"


def rows(engine, sql, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).mappings().all()


def example(engine, name, **params):
    sqlite = EXAMPLES / "sqlite" / f"{name}.sql"
    path = sqlite if engine.dialect.name == "sqlite" and sqlite.exists() else EXAMPLES / name
    return rows(engine, path.with_suffix(".sql").read_text(), **params)


def as_json(value):
    return json.loads(value) if isinstance(value, str) else value


def as_time(value):
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


def columns(url, view):
    engine = db.make_engine(Settings(database_url=url))
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(f"SELECT * FROM {view} LIMIT 0")).keys())
    finally:
        engine.dispose()


@pytest.mark.parametrize("view", VIEWS)
def test_each_view_has_the_same_columns_on_sqlite_as_on_postgres(postgres_url, sqlite_url, view):
    assert columns(sqlite_url, view) == columns(postgres_url, view)


def readme_queries():
    """The SQL the README shows, in backticks: each is run as written."""
    readme = (REPO_ROOT / "README.md").read_text()
    return re.findall(r"`(SELECT [^`]+)`", readme)


def test_the_readme_shows_a_query():
    assert readme_queries() == ["SELECT * FROM signal_feed WHERE email = 'ada@example.com'"]


@BOTH_STORES
def test_the_readmes_worked_example_shows_four_signals_in_its_query(client, account, engine):
    page = {"type": "page", "name": "Pricing", "anonymousId": "A", "properties": {"p": 1}}
    send(
        client,
        account,
        {**page, "messageId": "m-p1"},
        {**page, "messageId": "m-p2"},
        identify(None, userId="U", anonymousId="A", traits={}),
        identify(
            "ada@example.com",
            userId="U",
            anonymousId=None,
            traits={"email": "ada@example.com", "name": "Ada"},
        ),
    )
    for query in readme_queries():
        # The store is shared by the tests, each in an account of its own.
        feed = rows(
            engine, f"SELECT * FROM ({query}) q WHERE account_id = :a", a=account.account_id
        )
        assert sorted(r["event_type"] for r in feed) == ["identify", "identify", "page", "page"]
        assert not any(r["is_cold"] for r in feed)
        assert {"p": 1} in [as_json(r["properties"]) for r in feed]


@BOTH_STORES
def test_the_example_queries_answer_on_both_stores(client, account, engine):
    send(
        client,
        account,
        track("Demo Requested", anonymousId="v3", **recent()),
        track("Demo Requested", anonymousId="v3", **recent()),
        identify("timeline@example.com", anonymousId="v3", **recent()),
        track("Pricing Viewed", anonymousId="cold-visitor", **recent()),
    )
    a = account.account_id
    timeline = example(engine, "lead_timeline", account_id=a, email="timeline@example.com")
    assert [r["event_type"] for r in timeline].count("track") == 2 and len(timeline) == 3
    active = example(engine, "leads_active_this_week", account_id=a)
    assert [(r["email"], r["signals_this_week"]) for r in active] == [("timeline@example.com", 3)]
    per_day = example(engine, "signals_per_event_per_day", account_id=a)
    counts = {r["event_name"]: (r["signals"], r["cold"]) for r in per_day}
    assert counts["Demo Requested"] == (2, 0) and counts["Pricing Viewed"] == (1, 1)


@BOTH_STORES
def test_summary_cold_storage_conflicts_and_blocked_identifiers_on_both_stores(
    client, account, engine
):
    send(client, account, track(messageId="dup-id"), track(messageId="dup-id"))
    send(client, account, identify("sum@example.com", anonymousId="s1"))
    for n in range(7):
        send(client, account, identify(f"b{n}@example.com", anonymousId="family-laptop"))
    where = " WHERE account_id = :a"
    a = account.account_id
    conflicts = rows(engine, "SELECT * FROM message_id_conflicts" + where, a=a)
    assert [(r["message_id"], r["versions"]) for r in conflicts] == [("dup-id", 2)]
    blocked = rows(engine, "SELECT * FROM blocked_identifiers" + where, a=a)
    assert [(r["value"], r["leads_linked"]) for r in blocked] == [("family-laptop", 6)]
    summary = rows(
        engine, "SELECT * FROM lead_summary" + where + " AND email = 'sum@example.com'", a=a
    )
    assert (summary[0]["signal_count"], summary[0]["name"]) == (1, "Ada Lovelace")
    assert as_time(summary[0]["first_seen_at"]) == datetime(2026, 11, 1, 10, 5, tzinfo=UTC)
    storage = rows(engine, "SELECT * FROM cold_storage" + where, a=a)[0]
    assert storage["cold_signals"] == 2
    oldest = as_time(storage["oldest_received_at"])
    assert (as_time(storage["next_expiry_at"]) - oldest).days == 90


def test_init_db_on_sqlite_creates_the_views(sqlite_url):
    engine = db.make_engine(Settings(database_url=sqlite_url))
    lines: list[str] = []
    db.upgrade_schema(engine, lines.append)
    engine.dispose()
    assert any(line.startswith("views: signal_feed") for line in lines)
