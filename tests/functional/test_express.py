"""The express lane stores exactly what the general path stores, and leaves it what it
cannot take. Postgres only: the lane is Postgres's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from receiver.accounts import find_sender
from receiver.db import run_on_driver, run_transaction
from receiver.errors import Unauthorized
from receiver.ingest import express
from receiver.ingest.pipeline import prepare, store_body
from tests.builders import identify, track
from tests.conftest import make_account

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
MAX_EVENT_BYTES = 32 * 1024


def through_express(engine, api_key, events, now=NOW):
    prepared = prepare(events, now, MAX_EVENT_BYTES)
    return run_on_driver(
        engine,
        lambda connection: express.store_body(
            connection, api_key, lambda secret: None, prepared, now
        ),
    )


def through_general_path(engine, api_key, events, now=NOW):
    prepared = prepare(events, now, MAX_EVENT_BYTES)

    def work(session):
        return store_body(session, find_sender(session, api_key), prepared, now)

    return run_transaction(engine, work)


def rows(engine, sql, account_id):
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(sa.text(sql), {"a": account_id}).mappings()]


def stored_state(engine, account_id):
    """Everything a body of plain events writes, without the ids that differ per account."""
    return {
        "signals": rows(
            engine,
            """SELECT s.source, s.event_type, s.event_name, s.anonymous_id, s.user_id,
                      s.message_id, s.content_hash, s.payload, s.occurred_at, s.received_at,
                      s.is_cold, l.email AS lead_email, r.name AS rule_name, s.mapped_name,
                      s.score, s.mapped_fields, s.linked_by_signal_id IS NULL AS unlinked
               FROM signals AS s
               LEFT JOIN leads AS l ON l.account_id = s.account_id AND l.id = s.lead_id
               LEFT JOIN rules AS r ON r.account_id = s.account_id AND r.id = s.rule_id
               WHERE s.account_id = :a ORDER BY s.id""",
            account_id,
        ),
        "queue": rows(
            engine,
            """SELECT source, event_type, event_name, count, first_seen_at, last_seen_at, sample
               FROM queue_groups WHERE account_id = :a ORDER BY source, event_type, event_name""",
            account_id,
        ),
        "usage": rows(
            engine,
            "SELECT period_start, used FROM usage_counters WHERE account_id = :a",
            account_id,
        ),
        "leads": rows(
            engine,
            "SELECT email, first_seen_at, last_seen_at FROM leads WHERE account_id = :a "
            "ORDER BY email",
            account_id,
        ),
    }


def add_rule(client, account, **rule):
    response = client.post(
        "/admin/rules",
        json=rule,
        headers={"Authorization": f"Bearer {account.admin_token}"},
    )
    assert response.status_code == 201, response.json


def test_the_express_lane_stores_what_the_general_path_stores(client, engine):
    accounts = [make_account(engine), make_account(engine)]
    known_visitors = {
        "anon-ada": "ada@example.com",
        "anon-grace": "grace@example.com",
        "anon-shared": "linus@example.com",
    }
    for account in accounts:
        add_rule(
            client,
            account,
            name="Demo requests",
            event_name="Demo Requested",
            fields={"plan": "properties.plan"},
            signal={"name": "demo", "score": 30},
        )
        # The same leads in both accounts, made by identifies (the general path's work).
        for visitor, email in known_visitors.items():
            identify_body = identify(
                email=email, anonymousId=visitor, userId=f"user-{visitor}", messageId=visitor
            )
            through_general_path(engine, account.api_key, [identify_body])
        # Identifiers blocked from linking (as one seen on too many leads is).
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "UPDATE identities SET blocked_at = now() "
                    "WHERE account_id = :a AND value IN ('user-anon-grace', 'anon-shared')"
                ),
                {"a": account.account_id},
            )
    repeated = track("Pricing Viewed", anonymousId="anon-new", messageId="m-repeat")
    body = [
        track("Pricing Viewed", anonymousId="anon-ada", messageId="m1"),
        track(
            "Docs Read",
            anonymousId="anon-grace",
            messageId="m2",
            timestamp="2026-10-01T08:00:00Z",
            originalTimestamp=None,
        ),
        track(
            "Demo Requested",
            anonymousId="anon-ada",
            messageId="m3",
            properties={"plan": "enterprise"},
        ),
        repeated,
        {"type": "page", "anonymousId": "anon-new", "messageId": "m4", "name": "Home"},
        {"event": "invoice.paid", "amount": 12},
        repeated,
        track("Pricing Viewed", anonymousId="anon-grace", messageId="m5"),
        # userId before anonymousId: Ada's userId wins over Grace's anonymousId.
        track("Docs Read", userId="user-anon-ada", anonymousId="anon-grace", messageId="m6"),
        # A blocked userId places by the anonymousId, or leaves the signal on no lead.
        track("Docs Read", userId="user-anon-grace", anonymousId="anon-ada", messageId="m7"),
        track("Docs Read", userId="user-anon-grace", anonymousId=None, messageId="m8"),
        track("Docs Read", userId="user-anon-grace", anonymousId="anon-other", messageId="m9"),
        track("Docs Read", anonymousId="anon-shared", messageId="m10"),
    ]
    express_outcome = through_express(engine, accounts[0].api_key, body)
    general_outcome = through_general_path(engine, accounts[1].api_key, body)

    assert express_outcome.body() == general_outcome.body()
    statuses = (
        "stored stored stored cold cold stored duplicate stored stored stored stored cold stored"
    )
    assert [r["status"] for r in express_outcome.results] == statuses.split()
    leads = [r["lead_email"] for r in stored_state(engine, accounts[0].account_id)["signals"]]
    assert leads[-5:] == ["ada@example.com", "ada@example.com", None, None, None]
    assert stored_state(engine, accounts[0].account_id) == stored_state(
        engine, accounts[1].account_id
    )
    # And a redelivery of the whole body is all duplicates, through both.
    assert through_express(engine, accounts[0].api_key, body).body() == (
        through_general_path(engine, accounts[1].api_key, body).body()
    )
    assert stored_state(engine, accounts[0].account_id) == stored_state(
        engine, accounts[1].account_id
    )


def test_the_express_lane_takes_no_identity_events():
    identify_body = prepare([identify()], NOW, MAX_EVENT_BYTES)
    tracks = prepare([track(), track()], NOW, MAX_EVENT_BYTES)
    assert not express.applies("postgresql", identify_body)
    assert express.applies("postgresql", tracks)
    assert not express.applies("sqlite", tracks)


def test_a_rule_with_lead_fields_sends_the_body_to_the_general_path(client, engine):
    account = make_account(engine)
    add_rule(
        client,
        account,
        name="Signups",
        event_name="Signed Up",
        fields={"email": "properties.email"},
    )
    assert through_express(engine, account.api_key, [track(properties={"email": "a@b.co"})]) is None
    assert stored_state(engine, account.account_id)["signals"] == []


def test_a_body_over_the_limit_is_rolled_back_for_the_general_path(engine):
    account = make_account(engine, signal_limit=2)
    through_express(engine, account.api_key, [track()])
    assert through_express(engine, account.api_key, [track(), track()]) is None
    assert stored_state(engine, account.account_id)["usage"][0]["used"] == 1
    assert len(stored_state(engine, account.account_id)["signals"]) == 1


def test_a_rule_changed_after_the_lane_read_the_rules_maps_the_next_body(client, engine):
    account = make_account(engine)
    through_express(engine, account.api_key, [track("Demo Requested")])
    add_rule(client, account, name="Demos", event_name="Demo Requested", signal={"score": 5})
    through_express(engine, account.api_key, [track("Demo Requested")])
    assert [s["score"] for s in stored_state(engine, account.account_id)["signals"]] == [None, 5]


def test_a_key_revoked_after_the_lane_read_it_is_refused(client, engine):
    account = make_account(engine)
    through_express(engine, account.api_key, [track()])
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE api_keys SET revoked_at = now() WHERE account_id = :a"),
            {"a": account.account_id},
        )
    with pytest.raises(Unauthorized):
        through_express(engine, account.api_key, [track()])
    assert len(stored_state(engine, account.account_id)["signals"]) == 1


def test_the_lane_checks_the_key_secret_before_it_stores(engine):
    account = make_account(engine, secret="s3cret")
    checked = []

    def check(secret):
        checked.append(secret)
        if secret is not None:
            raise Unauthorized()

    prepared = prepare([track()], NOW, MAX_EVENT_BYTES)
    with pytest.raises(Unauthorized):
        run_on_driver(
            engine,
            lambda connection: express.store_body(
                connection, account.api_key, check, prepared, NOW
            ),
        )
    assert checked[-1] == "s3cret"
    assert stored_state(engine, account.account_id)["signals"] == []
    # With the secret presented, the same key stores.
    through_express(engine, account.api_key, [track()])
    assert len(stored_state(engine, account.account_id)["signals"]) == 1
