"""ingest/plain.py sends plain bodies on Postgres in two round trips: it writes what
pipeline.py writes for the same body, and hands back what is pipeline.py's."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver import db
from receiver.ingest import plain
from receiver.ingest.pipeline import begin, prepare, store_body
from receiver.rules.engine import store_of
from receiver.store import period_of
from tests.builders import identify, track
from tests.conftest import make_account
from tests.functional.test_body_order import ANONYMOUS, USERS, state

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def through_plain(engine, api_key, events):
    prepared = prepare(events, NOW, 32 * 1024)
    return db.run_on_driver(
        engine,
        lambda c: plain.store_body(
            c, api_key, lambda secret, whole_body: None, prepared, NOW, store_of(engine)
        ),
    )


def through_pipeline(engine, api_key, events, first_attempt=False):
    """A body through the general path, as its first attempt (resolve.lock_then_read) if
    asked."""
    prepared = prepare(events, NOW, 32 * 1024)
    return db.run_transaction(
        engine,
        lambda s: store_body(
            s, begin(s, api_key, period_of(NOW)[0]), prepared, NOW, first_attempt=first_attempt
        ),
    )


plain_events = st.lists(
    st.builds(
        lambda kind, anonymous, user, n: {
            "type": kind,
            "event": "Signed Up",
            "anonymousId": anonymous,
            "userId": user,
            "messageId": f"p-{n}",
            "properties": {"n": n},
        },
        st.sampled_from(["track", "page"]),
        st.sampled_from([*ANONYMOUS, None]),
        st.sampled_from([*USERS, None]),
        st.integers(0, 5),
    ),
    min_size=1,
    max_size=10,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=plain_events)
def test_plain_lane_writes_what_the_pipeline_writes(engine, events):
    known = [identify("e0@example.com", anonymousId="a0", userId="u0")]
    results = []
    for lane in (through_plain, through_pipeline):
        account = make_account(engine)
        through_pipeline(engine, account.api_key, known)
        outcome = lane(engine, account.api_key, events)
        results.append((outcome.body(), state(engine, account.account_id), usage(engine, account)))
        # A new queue group's sample is its first event in the body.
        assert samples(engine, account) == {
            kind: next(e["messageId"] for e in events if e["type"] == kind)
            for kind in {e["type"] for e in events}
        }
    assert results[0] == results[1]


def usage(engine, account):
    return tuple(
        rows_of(
            engine,
            account,
            "SELECT (SELECT used FROM usage_counters WHERE account_id = :a),"
            " (SELECT array_agg(event_type || '/' || event_name || ':' || count"
            " ORDER BY event_type, event_name)"
            "  FROM queue_groups WHERE account_id = :a)",
        )[0]
    )


def samples(engine, account):
    """The messageId of each plain queue group's sample, by event type."""
    return dict(
        rows_of(
            engine,
            account,
            "SELECT event_type, sample ->> 'messageId' FROM queue_groups"
            " WHERE account_id = :a AND event_type IN ('track', 'page')",
        )
    )


def rows_of(engine, account, query):
    with engine.connect() as connection:
        return connection.execute(sa.text(query), {"a": account.account_id}).all()


def test_a_body_a_rule_gives_lead_fields_is_handed_back_with_nothing_stored(client, engine):
    account = make_account(engine)
    response = client.post(
        "/admin/rules",
        json={
            "name": "Signups",
            "event_name": "Signed Up",
            "fields": {"email": "properties.email"},
        },
        headers={"Authorization": f"Bearer {account.admin_token}"},
    )
    assert response.status_code == 201
    assert through_plain(engine, account.api_key, [track(properties={"email": "a@b.co"})]) is None
    assert state(engine, account.account_id)["signals"] == []


def test_a_body_that_may_not_fit_is_handed_back_with_nothing_stored(engine):
    account = make_account(engine, signal_limit=2)
    assert through_plain(engine, account.api_key, [track()]) is not None
    assert through_plain(engine, account.api_key, [track(), track()]) is None
    assert len(state(engine, account.account_id)["signals"]) == 1
