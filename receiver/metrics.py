"""The process's metrics (CONTRACT section 8); receiver/api/metrics.py serves them.

Under gunicorn each worker writes its values to files in `PROMETHEUS_MULTIPROC_DIR`, which
gunicorn.conf.py creates and empties when the server starts, and `/metrics` sums every
worker's files, whichever worker answers. Without that variable (the development server, the
tests) the values are the one process's own.

Label values are bounded by construction: a route's pattern (never its path), a status code, an
outcome, an error class. None holds a key, a token, an email or an account's name.
"""

from __future__ import annotations

import os

# prometheus_client picks its storage when it is first imported: the directory must exist
# by then, for an app run alone with the variable set as well as under gunicorn.
_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _MULTIPROC_DIR:
    os.makedirs(_MULTIPROC_DIR, exist_ok=True)

# Imported after the directory is made, on purpose (see above).
from prometheus_client import (  # noqa: E402
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402

HTTP_REQUESTS = Counter(
    "receiver_http_requests",
    "HTTP requests answered, by route pattern and status.",
    ["route", "status"],
)
HTTP_DURATION = Histogram(
    "receiver_http_request_duration_seconds",
    "Time to answer an HTTP request, by route pattern.",
    ["route"],
    # Segment gives up after 5 s; most events are answered in a few milliseconds.
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS = Counter(
    "receiver_events",
    "Events received, by outcome: stored, cold, duplicate, invalid, rejected.",
    ["outcome"],
)
REHYDRATED = Counter(
    "receiver_rehydrated_signals",
    "Stored cold signals moved onto a lead by identity resolution.",
)
UNAVAILABLE = Counter(
    "receiver_store_unavailable",
    "Requests answered 503 because the store failed, by the error's class.",
    ["error"],
)
TRANSACTION_RETRIES = Counter(
    "receiver_transaction_retries",
    "Transactions run again, by cause: deadlock, serialization, disconnect.",
    ["cause"],
)
LOCK_TIMEOUTS = Counter(
    "receiver_lock_timeouts",
    "Statements that waited for a lock past lock_timeout (answered 503).",
)
BACKFILL_SCANNED = Counter(
    "receiver_backfill_signals_scanned", "Stored signals a rule backfill has looked at."
)
BACKFILL_MAPPED = Counter(
    "receiver_backfill_signals_mapped", "Stored signals a rule backfill has mapped."
)
BACKFILLS_RUNNING = Gauge(
    "receiver_backfills_running",
    "Rule backfills running now, over every live worker.",
    multiprocess_mode="livesum",
)
DELIVERY_LOG_DROPPED = Counter(
    "receiver_delivery_log_dropped",
    "Delivery log entries dropped because the writer fell behind or failed.",
)

OUTCOMES = frozenset({"stored", "cold", "duplicate", "invalid", "rejected"})
RETRY_CAUSES = {"40P01": "deadlock", "40001": "serialization"}
LOCK_NOT_AVAILABLE = "55P03"


_EVENTS_BY_OUTCOME = {outcome: EVENTS.labels(outcome) for outcome in OUTCOMES}


def count_events(results: list[dict]) -> None:
    counts: dict[str, int] = {}
    for result in results:
        status = result.get("status")
        if status in OUTCOMES:
            counts[status] = counts.get(status, 0) + 1
    for outcome, count in counts.items():
        _EVENTS_BY_OUTCOME[outcome].inc(count)


def count_retry(error: BaseException) -> None:
    """For db.run_transaction, when it runs a transaction again."""
    sqlstate = getattr(getattr(error, "orig", error), "sqlstate", None)
    TRANSACTION_RETRIES.labels(RETRY_CAUSES.get(sqlstate or "", "disconnect")).inc()


def count_unavailable(error: BaseException) -> None:
    UNAVAILABLE.labels(error.__class__.__name__).inc()
    if getattr(getattr(error, "orig", error), "sqlstate", None) == LOCK_NOT_AVAILABLE:
        LOCK_TIMEOUTS.inc()


def exposition() -> bytes:
    if not _MULTIPROC_DIR:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=_MULTIPROC_DIR)
    return generate_latest(registry)
