"""The analyst views and the example queries of sql/, run against Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import sqlalchemy as sa
from freezegun import freeze_time

from receiver import retention
from tests.builders import identify, track
from tests.conftest import REPO_ROOT, make_account
from tests.functional.test_identity import send


def run_example(engine, name, **params):
    sql = (REPO_ROOT / "sql" / "examples" / f"{name}.sql").read_text()
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).mappings().all()


def view(engine, name, account):
    with engine.connect() as connection:
        return (
            connection.execute(
                sa.text(f"SELECT * FROM {name} WHERE account_id = :a ORDER BY 1, 2, 3"),
                {"a": account.account_id},
            )
            .mappings()
            .all()
        )


def recent(**overrides):
    now = datetime.now(UTC).isoformat()
    return {**overrides, "timestamp": now, "originalTimestamp": now}


def test_signal_feed_and_lead_summary_show_the_lead_and_its_history(client, account, engine):
    send(
        client,
        account,
        track(anonymousId="v1", **recent()),
        identify("feed@example.com", anonymousId="v1", timestamp="2026-11-03T00:00:00Z"),
        track(anonymousId="v2"),
    )
    feed = view(engine, "signal_feed", account)
    assert len(feed) == 3
    on_lead = [row for row in feed if row["email"] == "feed@example.com"]
    assert len(on_lead) == 2 and not any(row["is_cold"] for row in on_lead)
    assert [row["is_cold"] for row in feed if row["anonymous_id"] == "v2"] == [True]
    assert on_lead[0]["properties"] == {"plan": "pro"}
    summary = view(engine, "lead_summary", account)
    assert [(s["email"], s["name"], s["signal_count"]) for s in summary] == [
        ("feed@example.com", "Ada Lovelace", 2)
    ]
    assert summary[0]["first_seen_at"] == datetime(2026, 11, 3, tzinfo=UTC)


def test_example_queries_answer_from_the_views(client, account, engine):
    send(
        client,
        account,
        track("Demo Requested", anonymousId="v3", **recent()),
        track("Demo Requested", anonymousId="v3", **recent()),
        identify("timeline@example.com", anonymousId="v3", **recent()),
    )
    timeline = run_example(
        engine, "lead_timeline", account_id=account.account_id, email="timeline@example.com"
    )
    assert [row["event_type"] for row in timeline].count("track") == 2
    assert len(timeline) == 3
    active = run_example(engine, "leads_active_this_week", account_id=account.account_id)
    assert [(row["email"], row["signals_this_week"]) for row in active] == [
        ("timeline@example.com", 3)
    ]
    per_day = run_example(engine, "signals_per_event_per_day", account_id=account.account_id)
    demo = [row for row in per_day if row["event_name"] == "Demo Requested"]
    assert [(row["signals"], row["cold"]) for row in demo] == [(2, 0)]


def test_conflicts_and_blocked_identifiers_are_visible(client, account, engine):
    send(client, account, track(messageId="dup-id"), track(messageId="dup-id"))
    assert [
        (r["message_id"], r["versions"]) for r in view(engine, "message_id_conflicts", account)
    ] == [("dup-id", 2)]
    for n in range(7):
        send(client, account, identify(f"b{n}@example.com", anonymousId="family-laptop"))
    blocked = view(engine, "blocked_identifiers", account)
    assert [(r["value"], r["leads_linked"]) for r in blocked] == [("family-laptop", 6)]


def test_purge_cold_deletes_only_expired_cold_signals_in_chunks(client, engine):
    account = make_account(engine)
    with freeze_time("2026-01-01T00:00:00Z"):
        send(client, account, *[track(anonymousId="old") for _ in range(5)])
        send(client, account, identify("kept@example.com", anonymousId="lead-visitor"))
    with freeze_time("2026-03-30T00:00:00Z"):
        send(client, account, track(anonymousId="new"))
    storage = view(engine, "cold_storage", account)[0]
    assert storage["cold_signals"] == 6
    assert storage["next_expiry_at"] == datetime(2026, 4, 1, tzinfo=UTC)
    admin = client.get(
        "/admin/cold-storage", headers={"Authorization": f"Bearer {account.admin_token}"}
    ).json
    assert admin == {
        "cold_signals": 6,
        "retention_days": 90,
        "oldest_received_at": "2026-01-01T00:00:00+00:00",
        "next_expiry_at": "2026-04-01T00:00:00+00:00",
    }
    lines: list[str] = []
    now = datetime(2026, 4, 2, tzinfo=UTC)
    purged = retention.purge_cold(engine, now, lines.append, chunk=2)
    assert purged >= 5
    mine = [line for line in lines if line.startswith(f"account {account.account_id}:")]
    assert mine[-1].startswith(f"account {account.account_id}: 5 cold signals")
    assert len(mine) == 3  # chunks of 2, 2 and 1
    with engine.connect() as connection:
        left = connection.execute(
            sa.text("SELECT anonymous_id, is_cold FROM signals WHERE account_id = :a ORDER BY id"),
            {"a": account.account_id},
        ).all()
    assert left == [("lead-visitor", False), ("new", True)]
    assert (
        retention.purge_cold(engine, now + timedelta(days=1), lines.append, older_than_days=3650)
        == 0
    )


def test_delete_request_leaves_nothing_queryable_in_the_views(client, account, engine):
    send(
        client,
        account,
        identify("gone@example.com", userId="user-gone", anonymousId="a-gone"),
        track(anonymousId="a-gone"),
    )
    client.post(
        f"/webhook/{account.api_key}",
        data=orjson.dumps({"type": "delete", "userId": "user-gone", "messageId": "del-gone"}),
    )
    assert view(engine, "signal_feed", account) == []
    assert view(engine, "lead_summary", account) == []
