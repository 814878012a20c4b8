"""resolve.lock_then_read reads the graph under shared locks, then takes exclusive ones: its
read is final only where nothing it saw could change in between. Another transaction is
committed in that gap, on purpose (locks.lock_closure is where the exclusive locks are
taken), and the body's outcome must be the one a read after it gives."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from receiver.identity import locks, resolve
from tests.builders import identify
from tests.conftest import make_account
from tests.functional.test_plain_lane import through_pipeline


@pytest.fixture
def in_the_gap(monkeypatch):
    """Run `work` once, committed, just before the next exclusive identity locks are taken."""
    pending = []
    original = locks.lock_closure

    def lock_closure(session, keys, held):
        if pending:
            pending.pop()()
        return original(session, keys, held)

    monkeypatch.setattr(locks, "lock_closure", lock_closure)
    return pending.append


def test_a_lead_deleted_between_the_read_and_the_locks_is_not_linked_to(engine, in_the_gap):
    """The email's lead is read, then deleted (Segment's delete of its userId, which locks
    neither the email nor the new visitor) before the identify's exclusive locks: the
    identify makes a new lead for the email. Reusing the first read, it would link the
    visitor to the deleted lead."""
    account = make_account(engine)
    through_pipeline(
        engine, account.api_key, [identify("ada@example.com", userId="u1", anonymousId="b1")]
    )
    in_the_gap(
        lambda: through_pipeline(engine, account.api_key, [{"type": "delete", "userId": "u1"}])
    )
    through_pipeline(
        engine,
        account.api_key,
        [identify("ada@example.com", anonymousId="a1", messageId="late")],
        first_attempt=True,
    )
    with engine.connect() as connection:
        leads = connection.execute(
            sa.text("SELECT id FROM leads WHERE account_id = :a AND email = 'ada@example.com'"),
            {"a": account.account_id},
        ).all()
        placed = connection.execute(
            sa.text(
                "SELECT s.lead_id, s.is_cold, c.lead_id AS cluster_lead FROM signals s"
                " JOIN identities i ON i.account_id = s.account_id"
                "  AND i.kind = 'anonymous_id' AND i.value = 'a1'"
                " JOIN identity_clusters c ON c.account_id = i.account_id AND c.id = i.cluster_id"
                " WHERE s.account_id = :a AND s.message_id = 'late'"
            ),
            {"a": account.account_id},
        ).all()
    assert len(leads) == 1
    # The identify's signal, and its visitor's cluster, on that lead.
    assert [tuple(row) for row in placed] == [(leads[0].id, False, leads[0].id)]


def test_a_new_visitor_with_a_new_email_reads_once_and_holds_the_email(
    engine, in_the_gap, monkeypatch
):
    """A new visitor's identify with a new email reaches nothing but its own keys and the
    email, read under their shared locks: another visitor's identify of the same email cannot
    take it in the gap, so the first read stays true and is not read again."""
    account = make_account(engine)
    email_key = locks.identity_key(account.account_id, locks.EMAIL, "new@example.com")
    taken = []

    def another_identify_of_the_email():
        with engine.connect() as connection:
            taken.append(
                connection.execute(
                    sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": email_key}
                ).scalar_one()
            )

    in_the_gap(another_identify_of_the_email)
    reads = []
    read_run = resolve._read_run
    monkeypatch.setattr(
        resolve, "_read_run", lambda *args, **kwargs: reads.append(1) or read_run(*args, **kwargs)
    )
    outcome = through_pipeline(
        engine, account.api_key, [identify("new@example.com", anonymousId="fresh")], True
    )
    assert outcome.stored == 1
    assert taken == [False]
    assert len(reads) == 1
