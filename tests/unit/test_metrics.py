"""Which store errors and retries count under which label."""

from __future__ import annotations

import sqlalchemy as sa

from receiver import metrics


class DriverError(Exception):
    def __init__(self, sqlstate):
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def wrapped(sqlstate):
    return sa.exc.OperationalError("SELECT 1", {}, DriverError(sqlstate))


def count(counter, *labels):
    return (counter.labels(*labels) if labels else counter)._value.get()


def test_a_lock_timeout_counts_as_unavailable_and_as_a_lock_timeout():
    before = count(metrics.LOCK_TIMEOUTS), count(metrics.UNAVAILABLE, "OperationalError")
    metrics.count_unavailable(wrapped("55P03"))
    metrics.count_unavailable(wrapped("57014"))  # a statement timeout: no lock in it
    assert count(metrics.LOCK_TIMEOUTS) == before[0] + 1
    assert count(metrics.UNAVAILABLE, "OperationalError") == before[1] + 2


def test_retries_are_counted_by_cause():
    causes = ("deadlock", "serialization", "disconnect")
    before = [count(metrics.TRANSACTION_RETRIES, cause) for cause in causes]
    for error in (wrapped("40P01"), DriverError("40001"), wrapped(None)):
        metrics.count_retry(error)
    after = [count(metrics.TRANSACTION_RETRIES, cause) for cause in causes]
    assert after == [n + 1 for n in before]
