"""Backfill: when a rule is created or its match changes, the stored signals that no rule had
mapped and that it matches are mapped, with the same identity effects as on arrival.

It walks the account's unmapped signals in id order, a chunk per short transaction, and keeps
its cursor and counts on the rule: it can stop anywhere and resume, never maps a signal twice
(only unmapped ones are touched), and never holds ingestion back for longer than a chunk.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from receiver import metrics
from receiver.db import run_transaction
from receiver.identity import graph
from receiver.identity.locks import EXCLUSIVE, lock_account
from receiver.identity.resolve import Applied, Policy, lead_traits, resolve
from receiver.ingest.segment import Draft
from receiver.ingest.store import mapping_columns
from receiver.models import rules_table, signals_table
from receiver.rules import queue
from receiver.rules.engine import CompiledRule, compile_rule

log = logging.getLogger(__name__)
CHUNK = 500
# A backfill whose runner has not reported for this long is taken over by the next one.
STALE_AFTER = timedelta(seconds=30)
PENDING, RUNNING, DONE = "pending", "running", "done"


def start(engine: sa.Engine, account_id: int, rule_id: int, policy: Policy) -> None:
    """Run the rule's backfill in a background thread of this process, if nobody runs it."""
    thread = threading.Thread(
        target=run,
        args=(engine, account_id, rule_id, policy),
        name=f"backfill-{account_id}-{rule_id}",
        daemon=True,
    )
    _running.add(thread)
    thread.start()


def join_running(timeout: float) -> None:
    """Wait for this process's backfill threads (before its engine is disposed)."""
    for thread in list(_running):
        thread.join(timeout)


_running: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def run(engine: sa.Engine, account_id: int, rule_id: int, policy: Policy) -> None:
    try:
        if not run_transaction(engine, lambda s: _claim(s, account_id, rule_id)):
            return
        with metrics.BACKFILLS_RUNNING.track_inprogress():
            while not run_transaction(
                engine, lambda s: map_chunk(s, account_id, rule_id, policy, datetime.now(UTC))
            ):
                pass
    except Exception:
        log.exception("backfill of rule %s stopped; it resumes when the rule is next read", rule_id)


def _claim(session: Session, account_id: int, rule_id: int) -> bool:
    r = rules_table.c
    now = datetime.now(UTC)
    claimed = session.execute(
        sa.update(rules_table)
        .where(
            r.account_id == account_id,
            r.id == rule_id,
            r.backfill_status != DONE,
            sa.or_(r.backfill_heartbeat_at.is_(None), r.backfill_heartbeat_at < now - STALE_AFTER),
        )
        .values(backfill_status=RUNNING, backfill_heartbeat_at=now)
        .returning(r.id)
    ).first()
    return claimed is not None


def is_stale(status: str, heartbeat_at: datetime | None, now: datetime) -> bool:
    if status == DONE:
        return False
    if heartbeat_at is None:
        return True
    if heartbeat_at.tzinfo is None:  # SQLite gives naive datetimes back
        heartbeat_at = heartbeat_at.replace(tzinfo=UTC)
    return heartbeat_at < now - STALE_AFTER


def map_chunk(
    session: Session, account_id: int, rule_id: int, policy: Policy, now: datetime
) -> bool:
    """Map one chunk; True when the backfill is finished (or the rule is gone)."""
    r, s = rules_table.c, signals_table.c
    # The account lock first, as rule changes take it: the same order, so no deadlock. Taken
    # exclusive, a chunk's identity effects are safe, and it is held for one chunk only.
    lock_account(session, account_id, EXCLUSIVE)
    rule = (
        session.execute(
            sa.select(rules_table)
            .where(r.account_id == account_id, r.id == rule_id)
            .with_for_update()
        )
        .mappings()
        .first()
    )
    if rule is None or rule["backfill_status"] == DONE:
        return True
    compiled = compile_rule(dict(rule), rule_id)
    rows = session.execute(
        sa.select(
            s.id,
            s.source,
            s.event_type,
            s.event_name,
            s.anonymous_id,
            s.user_id,
            s.message_id,
            s.occurred_at,
            s.payload,
            s.content_hash,
        )
        .where(s.account_id == account_id, s.rule_id.is_(None), s.id > rule["backfill_cursor"])
        .order_by(s.id)
        .limit(CHUNK)
    ).all()
    mapped = _map_rows(session, account_id, compiled, rows, policy, now)
    metrics.BACKFILL_SCANNED.inc(len(rows))
    metrics.BACKFILL_MAPPED.inc(mapped)
    done = len(rows) < CHUNK
    session.execute(
        sa.update(rules_table)
        .where(r.account_id == account_id, r.id == rule_id)
        .values(
            backfill_cursor=rows[-1].id if rows else rule["backfill_cursor"],
            backfill_scanned=r.backfill_scanned + len(rows),
            backfill_mapped=r.backfill_mapped + mapped,
            backfill_heartbeat_at=now,
            backfill_status=DONE if done else RUNNING,
            backfill_finished_at=now if done else None,
        )
    )
    return done


def _map_rows(
    session: Session,
    account_id: int,
    rule: CompiledRule,
    rows: Sequence[sa.Row],
    policy: Policy,
    now: datetime,
) -> int:
    s = signals_table.c
    drafts = []
    for row in rows:
        if rule.matches(row.source, row.event_type, row.event_name, row.payload):
            drafts.append(
                (
                    row.id,
                    Draft(
                        row.source,
                        row.event_type,
                        row.event_name,
                        row.anonymous_id,
                        row.user_id,
                        row.message_id,
                        row.occurred_at,
                        row.payload,
                        row.content_hash,
                        rule.match(row.payload),
                    ),
                )
            )
    if not drafts:
        return 0
    session.execute(
        sa.update(signals_table)
        .where(s.account_id == account_id, s.id == sa.bindparam("signal_id"), s.rule_id.is_(None))
        .values({name: sa.bindparam(f"new_{name}") for name in mapping_columns(drafts[0][1])}),
        [
            {
                "signal_id": signal_id,
                **{f"new_{name}": value for name, value in mapping_columns(draft).items()},
            }
            for signal_id, draft in drafts
        ],
    )
    queue.forget(
        session,
        account_id,
        [queue.group_key(d.source, d.event_type, d.event_name) for _, d in drafts],
    )
    for signal_id, draft in drafts:
        traits = lead_traits(draft.match.fields) if draft.match else {}
        if traits:
            resolve(
                session,
                account_id,
                draft,
                graph.keys_of(draft),
                traits,
                signal_id,
                now,
                policy,
                Applied(),
            )
    return len(drafts)
