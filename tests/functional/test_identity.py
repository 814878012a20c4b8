"""Identity resolution through the webhook: leads, cold storage, rehydration, merge safety."""

from __future__ import annotations

import contextlib

import orjson
import psycopg
import pytest
import sqlalchemy as sa

from receiver import db
from receiver.app import create_app
from receiver.config import Settings
from receiver.identity import locks
from tests.builders import identify, track
from tests.conftest import TEST_SECRET_KEY, _libpq, close_app, make_account
from tests.functional.test_webhook import BOTH_STORES


def send(client, account, *events):
    body = events[0] if len(events) == 1 else list(events)
    response = client.post(f"/webhook/{account.api_key}", data=orjson.dumps(body))
    assert response.status_code == 200, response.json
    return response.json


def rows(engine, sql, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).mappings().all()


def signals_of(engine, account, anonymous_id=None, user_id=None):
    return rows(
        engine,
        "SELECT * FROM signals WHERE account_id = :a AND "
        "(anonymous_id = :anon OR user_id = :user) ORDER BY id",
        a=account.account_id,
        anon=anonymous_id,
        user=user_id,
    )


def lead(engine, account, email):
    found = rows(
        engine,
        "SELECT * FROM leads WHERE account_id = :a AND email = :e",
        a=account.account_id,
        e=email,
    )
    return found[0] if found else None


def leads_count(engine, account):
    return rows(
        engine, "SELECT count(*) AS n FROM leads WHERE account_id = :a", a=account.account_id
    )[0]["n"]


@BOTH_STORES
def test_identify_with_email_creates_the_lead_and_rehydrates_cold_history(client, account, engine):
    send(client, account, *[track(anonymousId="anon-1") for _ in range(3)])
    assert all(s["is_cold"] for s in signals_of(engine, account, "anon-1"))
    response = send(client, account, identify(" Ada@Example.COM ", anonymousId="anon-1"))
    assert response["results"][0]["status"] == "stored"
    ada = lead(engine, account, "ada@example.com")
    assert ada is not None and ada["name"] == "Ada Lovelace"
    history = signals_of(engine, account, "anon-1")
    identify_id = history[-1]["id"]
    assert len(history) == 4
    assert {(s["lead_id"], s["is_cold"], s["linked_by_signal_id"]) for s in history} == {
        (ada["id"], False, identify_id)
    }


@BOTH_STORES
def test_events_of_an_identified_visitor_go_straight_to_the_lead(client, account, engine):
    send(client, account, identify("grace@example.com", anonymousId="anon-2"))
    response = send(client, account, track(anonymousId="anon-2"))
    assert response["results"][0]["status"] == "stored"
    grace = lead(engine, account, "grace@example.com")
    assert [s["lead_id"] for s in signals_of(engine, account, "anon-2")] == [grace["id"]] * 2


def test_identify_without_a_valid_email_creates_no_lead(client, account, engine):
    send(client, account, track(anonymousId="anon-3"))
    response = send(client, account, identify("not-an-email", anonymousId="anon-3"))
    assert response["results"][0]["status"] == "cold"
    assert leads_count(engine, account) == 0
    assert all(s["is_cold"] for s in signals_of(engine, account, "anon-3"))


@BOTH_STORES
def test_login_then_server_side_identify_brings_the_whole_anonymous_history(
    client, account, engine
):
    send(client, account, track(anonymousId="browser-A"), track(anonymousId="browser-A"))
    send(client, account, identify(None, anonymousId="browser-A", userId="user-U"))
    assert leads_count(engine, account) == 0
    server_side = identify("linus@example.com", userId="user-U")
    del server_side["anonymousId"]
    send(client, account, server_side)
    linus = lead(engine, account, "linus@example.com")
    everything = signals_of(engine, account, "browser-A", "user-U")
    assert len(everything) == 4
    assert {(s["lead_id"], s["is_cold"]) for s in everything} == {(linus["id"], False)}


def test_alias_joins_previous_id_to_user_id(client, account, engine):
    send(client, account, track(anonymousId="anon-alias"))
    send(
        client,
        account,
        {
            "type": "alias",
            "previousId": "anon-alias",
            "userId": "user-alias",
            "messageId": "alias-1",
        },
    )
    identify_user = identify("ken@example.com", userId="user-alias")
    del identify_user["anonymousId"]
    send(client, account, identify_user)
    ken = lead(engine, account, "ken@example.com")
    assert [s["lead_id"] for s in signals_of(engine, account, "anon-alias")] == [ken["id"]]


def test_one_batch_in_order_ends_with_everything_on_the_lead(client, account, engine):
    response = send(
        client,
        account,
        track(anonymousId="anon-b"),
        track(anonymousId="anon-b"),
        identify("barbara@example.com", anonymousId="anon-b"),
        track(anonymousId="anon-b"),
    )
    assert [r["status"] for r in response["results"]] == ["stored"] * 4
    barbara = lead(engine, account, "barbara@example.com")
    assert {s["lead_id"] for s in signals_of(engine, account, "anon-b")} == {barbara["id"]}


def test_late_anonymous_event_lands_on_the_lead_and_sets_first_seen(client, account, engine):
    send(
        client,
        account,
        identify("edsger@example.com", anonymousId="anon-late", timestamp="2026-11-10T10:00:00Z"),
    )
    late = track(anonymousId="anon-late", timestamp="2026-11-02T08:00:00Z")
    del late["originalTimestamp"]
    assert send(client, account, late)["results"][0]["status"] == "stored"
    edsger = lead(engine, account, "edsger@example.com")
    assert edsger["first_seen_at"].isoformat().startswith("2026-11-02T08:00:00")
    assert edsger["last_seen_at"].isoformat().startswith("2026-11-10T10:00:00")


def test_older_identify_never_overwrites_newer_traits(client, account, engine):
    newer = identify(
        "barbara.l@example.com",
        anonymousId="anon-t",
        timestamp="2026-11-10T00:00Z",
        traits={
            "email": "barbara.l@example.com",
            "firstName": "Barbara",
            "lastName": "Liskov",
            "title": "Professor",
            "company": {"name": "MIT"},
        },
    )
    older = identify(
        "barbara.l@example.com",
        anonymousId="anon-t",
        timestamp="2026-11-01T00:00Z",
        traits={
            "email": "barbara.l@example.com",
            "title": "Student",
            "company": "Stanford",
            "plan": "old",
        },
    )
    send(client, account, newer)
    send(client, account, older)
    barbara = lead(engine, account, "barbara.l@example.com")
    assert (barbara["name"], barbara["first_name"], barbara["last_name"]) == (
        "Barbara Liskov",
        "Barbara",
        "Liskov",
    )
    assert (barbara["title"], barbara["company"]) == ("Professor", "MIT")
    assert barbara["traits"]["plan"] == "old"  # a trait nobody newer had set is kept


def test_group_fills_the_lead_company_when_it_has_none(client, account, engine):
    send(
        client,
        account,
        identify("alan@example.com", userId="user-g", traits={"email": "alan@example.com"}),
    )
    send(
        client,
        account,
        {
            "type": "group",
            "groupId": "org-1",
            "userId": "user-g",
            "messageId": "group-1",
            "traits": {"name": "Bletchley", "size": 9},
        },
    )
    alan = lead(engine, account, "alan@example.com")
    assert (alan["company"], alan["group_id"]) == ("Bletchley", "org-1")
    company = rows(engine, "SELECT * FROM companies WHERE account_id = :a", a=account.account_id)
    assert company[0]["traits"] == {"name": "Bletchley", "size": 9}


@BOTH_STORES
def test_delete_removes_the_person_and_everything_of_theirs(client, account, engine):
    send(client, account, track(anonymousId="anon-d", userId=None))
    send(client, account, identify(None, anonymousId="anon-d", userId="user-d"))
    send(client, account, identify("del@example.com", userId="user-d", anonymousId="anon-d"))
    send(client, account, track(anonymousId="anon-d"), track(userId="user-d"))
    response = send(client, account, {"type": "delete", "userId": "user-d", "messageId": "del-1"})
    assert response["results"] == [{"status": "deleted", "messageId": "del-1"}]
    counts = ("received", "stored", "duplicates", "deleted")
    assert tuple(response[n] for n in counts) == (1, 0, 0, 1)
    assert lead(engine, account, "del@example.com") is None
    assert signals_of(engine, account, "anon-d", "user-d") == []
    assert (
        rows(engine, "SELECT * FROM identities WHERE account_id = :a", a=account.account_id) == []
    )


@pytest.mark.parametrize(
    "junk",
    [
        "undefined",
        "null",
        "0",
        "-1",
        "[object Object]",
        "00000000-0000-0000-0000-000000000000",
        "anonymous",
        "",
    ],
)
def test_junk_identifiers_never_link_anyone(client, account, engine, junk):
    send(client, account, identify("one@example.com", anonymousId=junk))
    send(client, account, identify("two@example.com", anonymousId=junk))
    response = send(client, account, track(anonymousId=junk))
    assert response["results"][0]["status"] == "stored"  # not cold: it can never resolve
    one, two = lead(engine, account, "one@example.com"), lead(engine, account, "two@example.com")
    tracked = rows(
        engine,
        "SELECT lead_id FROM signals WHERE account_id = :a AND event_type = 'track'",
        a=account.account_id,
    )
    assert one["id"] != two["id"] and tracked[0]["lead_id"] is None


def test_shared_device_sends_new_events_to_the_new_lead_and_keeps_the_old_history(
    client, account, engine
):
    send(client, account, track(anonymousId="kiosk"))
    send(client, account, identify("x@example.com", anonymousId="kiosk"))
    send(client, account, identify("y@example.com", anonymousId="kiosk"))
    send(client, account, track(anonymousId="kiosk"))
    x, y = lead(engine, account, "x@example.com"), lead(engine, account, "y@example.com")
    by_lead = rows(
        engine,
        "SELECT lead_id, event_type FROM signals WHERE account_id = :a ORDER BY id",
        a=account.account_id,
    )
    assert [(r["lead_id"], r["event_type"]) for r in by_lead] == [
        (x["id"], "track"),
        (x["id"], "identify"),
        (y["id"], "identify"),
        (y["id"], "track"),
    ]


def test_identifier_linked_to_too_many_emails_stops_linking_and_is_reported(
    client, account, engine
):
    for n in range(7):
        send(client, account, identify(f"p{n}@example.com", anonymousId="shared-anon"))
    identity = rows(
        engine,
        "SELECT * FROM identities WHERE account_id = :a AND value = :v",
        a=account.account_id,
        v="shared-anon",
    )[0]
    assert identity["blocked_at"] is not None
    assert len(identity["lead_history"]) == 6
    send(client, account, track(anonymousId="shared-anon"))
    last = rows(
        engine,
        "SELECT lead_id, is_cold FROM signals WHERE account_id = :a ORDER BY id DESC LIMIT 1",
        a=account.account_id,
    )[0]
    assert (last["lead_id"], last["is_cold"]) == (None, False)


def test_redelivered_identify_rehydrates_nothing_twice_and_counts_nothing_twice(
    client, account, engine
):
    event = identify("once@example.com", anonymousId="anon-once")
    send(client, account, track(anonymousId="anon-once"))
    send(client, account, event)
    before = rows(
        engine,
        "SELECT id, linked_at FROM signals WHERE account_id = :a ORDER BY id",
        a=account.account_id,
    )
    again = send(client, account, {**event, "sentAt": "2026-11-30T00:00:00Z"})
    assert again["results"][0]["status"] == "duplicate"
    after = rows(
        engine,
        "SELECT id, linked_at FROM signals WHERE account_id = :a ORDER BY id",
        a=account.account_id,
    )
    assert after == before
    used = rows(
        engine, "SELECT used FROM usage_counters WHERE account_id = :a", a=account.account_id
    )
    assert used[0]["used"] == 2


@contextlib.contextmanager
def returning_visitor(postgres_url):
    """An account whose visitor back-1 is back@example.com's, on an app whose statements give
    up waiting for a lock after 300 ms (503); the account, and a function that posts an event
    and returns the status."""
    settings = Settings(
        database_url=postgres_url, secret_key=TEST_SECRET_KEY, db_statement_timeout_ms=300
    )
    app = create_app(settings)
    try:
        account = make_account(db.engine_of(app))
        client = app.test_client()
        send(client, account, identify("back@example.com", anonymousId="back-1"))

        def post(event):
            body = orjson.dumps(event)
            return client.post(f"/webhook/{account.api_key}", data=body).status_code

        yield account, post
    finally:
        close_app(app)


def test_a_visitor_held_up_holds_up_no_other_visitor(postgres_url):
    """Locks are per identifier, not per account. While one visitor's identifier is held
    exclusive (its identify in flight, or a hot visitor's body), the same account's other
    visitors are stored at once: a returning visitor's track and identify, a new visitor's
    identify and track. That visitor's own track waits, here past a short lock timeout
    (503)."""
    with returning_visitor(postgres_url) as (account, post):
        key = locks.identity_key(account.account_id, "anonymous_id", "hot-1")
        with psycopg.connect(_libpq(sa.make_url(postgres_url))) as hot_visitor:
            hot_visitor.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            others = [
                post(track(anonymousId="back-1")),
                post(identify("back@example.com", anonymousId="back-1")),
                post(identify("new@example.com", anonymousId="new-1")),
                post(track(anonymousId="new-2")),
            ]
            own = post(track(anonymousId="hot-1"))
    assert (others, own) == ([200, 200, 200, 200], 503)


def test_a_returning_visitors_identify_does_not_wait_for_its_tracks(postgres_url):
    """A track in flight holds its visitor's identifiers shared. A returning visitor's
    identify links nothing, so it locks them shared too and goes through; an identify that
    gives the visitor another email must lock them exclusive, and waits (here past a short
    lock timeout: 503)."""
    with returning_visitor(postgres_url) as (account, post):
        key = locks.identity_key(account.account_id, "anonymous_id", "back-1")
        with psycopg.connect(_libpq(sa.make_url(postgres_url))) as track_in_flight:
            track_in_flight.execute("SELECT pg_advisory_xact_lock_shared(%s)", (key,))
            returning = post(identify("back@example.com", anonymousId="back-1"))
            another_email = post(identify("other@example.com", anonymousId="back-1"))
    assert (returning, another_email) == (200, 503)
