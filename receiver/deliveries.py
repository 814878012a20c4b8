"""The delivery log: each account's recent ingestion requests, as answered, for admins to see
why Segment's Event Delivery tab shows failures (GET /admin/deliveries).

A request is kept once its key is known (the webhook view sets `g.delivery_account_id`, from
ingest.receive's Seen, even when the secret check then refuses it, and `g.ingest_outcome`
once stored). The entry is put on a queue after the response is built and written by a
background thread of the worker, in batches (COPY on Postgres, one multi-row insert on
SQLite): ingestion never waits for it. The price is that an entry
can be lost when a worker dies before its next flush (at most FLUSH_INTERVAL_S), and that a
full queue drops entries (counted in receiver_delivery_log_dropped) rather than grow.

Bounded as it goes: after each batch, every account written to loses what is older than the
retention or past its cap; nothing here ever holds a payload or a key in full.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import orjson
import sqlalchemy as sa
from flask import Flask, Response, current_app, g, request
from sqlmodel import Session

from receiver import metrics
from receiver.config import Settings
from receiver.credentials import redact
from receiver.db import engine_of, run_transaction
from receiver.models import deliveries_table

log = logging.getLogger(__name__)
FLUSH_INTERVAL_S = 0.5
BATCH_ROWS = 500
# An account's cap is enforced this often, not after every batch: the delete walks the cap's
# worth of its index.
PRUNE_EVERY_S = 10.0
QUEUE_ROWS = 10_000
# A batch of Segment's may hold 4,000 events: the first ones say enough about it.
MAX_RESULTS = 1_000
MAX_MESSAGE_CHARS = 500
RESULT_FIELDS = ("status", "messageId", "type", "event", "message")


def entry(
    account_id: int,
    received_at: datetime,
    method: str,
    path: str,
    status: int,
    body: dict[str, Any] | None,
    events: Sequence[Any] = (),
    request_id: str | None = None,
) -> dict[str, Any]:
    """The row of one request. body is what was answered; events are the parsed body's items
    (Drafts or InvalidEvents), in the order of its results, for their type and event name."""
    body = body or {}
    results = body.get("results") or []
    return {
        "account_id": account_id,
        "received_at": received_at,
        "method": method,
        "path": redact(path),
        "status": status,
        "received": int(body.get("received", len(results) or len(events))),
        "stored": int(body.get("stored", 0)),
        "duplicates": int(body.get("duplicates", 0)),
        "request_id": request_id,
        "message": _cut(body.get("message")),
        "results": [
            _result(result, events[i] if i < len(events) else None)
            for i, result in enumerate(results[:MAX_RESULTS])
        ],
    }


def _result(result: dict[str, Any], event: Any) -> dict[str, Any]:
    return {
        "status": result.get("status"),
        "messageId": result.get("messageId"),
        "type": getattr(event, "event_type", None),
        "event": getattr(event, "event_name", None),
        "message": _cut(result.get("message")),
    }


def _cut(message: Any) -> str | None:
    return redact(str(message))[:MAX_MESSAGE_CHARS] if message is not None else None


class Writer:
    """One per app and process: a queue of rows and the thread that writes them."""

    def __init__(self, engine: sa.Engine, settings: Settings) -> None:
        self.engine = engine
        self.keep = timedelta(hours=settings.delivery_log_hours)
        self.per_account = settings.delivery_log_per_account
        self.rows: queue.Queue[dict[str, Any]] = queue.Queue(QUEUE_ROWS)
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.pid = 0
        self.pruned_at: dict[int, float] = {}
        self.closed = threading.Event()

    def put(self, row: dict[str, Any]) -> None:
        if self.closed.is_set():
            return
        self._ensure_thread()
        try:
            self.rows.put_nowait(row)
        except queue.Full:
            metrics.DELIVERY_LOG_DROPPED.inc()

    def _ensure_thread(self) -> None:
        # Started in the worker that serves, never in a process it was forked from.
        if self.thread is not None and self.pid == os.getpid():
            return
        with self.lock:
            if self.thread is None or self.pid != os.getpid():
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._run, name="delivery-log", daemon=True)
                self.thread.start()
                atexit.register(self.flush)

    def _run(self) -> None:
        while not self.closed.wait(FLUSH_INTERVAL_S):
            self.flush()

    def close(self) -> None:
        """Write what is queued and stop the thread (before the engine is disposed)."""
        self.closed.set()
        if self.thread is not None and self.pid == os.getpid():
            self.thread.join()
        atexit.unregister(self.flush)
        self.flush()

    def flush(self) -> int:
        """Write what is queued now; returns how many rows were written."""
        written = 0
        with self.lock:
            while batch := self._take(BATCH_ROWS):
                try:
                    self._insert(batch)
                    written += len(batch)
                except Exception:
                    metrics.DELIVERY_LOG_DROPPED.inc(len(batch))
                    log.warning("delivery log: %d entries not written", len(batch), exc_info=True)
        return written

    def _take(self, limit: int) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        while len(batch) < limit:
            try:
                batch.append(self.rows.get_nowait())
            except queue.Empty:
                break
        return batch

    def _insert(self, batch: list[dict[str, Any]]) -> None:
        if self.engine.dialect.name == "postgresql":
            run_transaction(self.engine, partial(_copy, batch=batch))
        else:
            run_transaction(
                self.engine, lambda session: session.execute(sa.insert(deliveries_table), batch)
            )
        now, clock = datetime.now(UTC), time.monotonic()
        due = [
            account_id
            for account_id in sorted({row["account_id"] for row in batch})
            if clock - self.pruned_at.get(account_id, -PRUNE_EVERY_S) >= PRUNE_EVERY_S
        ]
        if due:
            run_transaction(self.engine, partial(self._prune, due, now - self.keep))
            self.pruned_at.update(dict.fromkeys(due, clock))

    def _prune(self, account_ids: list[int], before: datetime, session: Session) -> None:
        for account_id in account_ids:
            prune(session, account_id, before, self.per_account)


COLUMNS = (
    "account_id",
    "received_at",
    "method",
    "path",
    "status",
    "received",
    "stored",
    "duplicates",
    "request_id",
    "message",
    "results",
)
_COPY = f"COPY deliveries ({', '.join(COLUMNS)}) FROM STDIN"


def _copy(session: Session, *, batch: list[dict[str, Any]]) -> None:
    """On Postgres a batch goes in by COPY: a third of the CPU of a multi-row INSERT through
    SQLAlchemy (about 6 us of CPU a row against 18, measured on batches of 100). COPY is
    psycopg's own, run on the session's connection, in its transaction."""
    connection = session.connection().connection.driver_connection
    assert connection is not None
    with connection.cursor() as cursor, cursor.copy(_COPY) as copy:
        for row in batch:
            copy.write_row([*(row[c] for c in COLUMNS[:-1]), orjson.dumps(row["results"]).decode()])


def prune(session: Session, account_id: int, before: datetime, keep: int) -> None:
    """Delete the account's entries older than before, and all but its newest keep."""
    d = deliveries_table.c
    oldest_kept = (
        sa.select(d.id)
        .where(d.account_id == account_id)
        .order_by(d.id.desc())
        .offset(keep - 1)
        .limit(1)
        .scalar_subquery()
    )
    session.execute(
        sa.delete(deliveries_table).where(
            d.account_id == account_id,
            sa.or_(d.received_at < before, d.id < sa.func.coalesce(oldest_kept, 0)),
        )
    )


def recent(
    session: Session,
    account_id: int,
    since: datetime,
    limit: int,
    statuses: tuple[int, int] | None = None,
) -> list[sa.RowMapping]:
    """Newest first; with statuses (low, high), only the requests answered low <= status < high."""
    d = deliveries_table.c
    answered = [d.status >= statuses[0], d.status < statuses[1]] if statuses else []
    return list(
        session.execute(
            sa.select(deliveries_table)
            .where(d.account_id == account_id, d.received_at >= since, *answered)
            .order_by(d.id.desc())
            .limit(limit)
        )
        .mappings()
        .all()
    )


def writer_of(app: Flask) -> Writer:
    return app.extensions["receiver.deliveries"]


def _record(response: Response) -> Response:
    account_id = g.get("delivery_account_id")
    if account_id is None:
        return response
    outcome = g.get("ingest_outcome")
    prepared = g.get("ingest_prepared")
    answered = response.get_json(silent=True) if response.status_code >= 400 else None
    body = outcome.body() if outcome is not None else answered
    if outcome is not None and isinstance(answered, dict):
        body = {**outcome.body(), "message": answered.get("message")}
    writer_of(current_app).put(
        entry(
            account_id,
            g.get("delivery_received_at") or datetime.now(UTC),
            request.method,
            request.path,
            response.status_code,
            body if isinstance(body, dict) else None,
            prepared.items if prepared is not None else (),
            g.get("request_id"),
        )
    )
    return response


def _note_arrival() -> None:
    g.delivery_received_at = datetime.now(UTC)


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["receiver.deliveries"] = writer = Writer(engine_of(app), settings)
    if settings.delivery_log_hours <= 0:
        writer.closed.set()  # the log is off: nothing is recorded, nothing shown
        return
    app.before_request(_note_arrival)
    app.after_request(_record)
