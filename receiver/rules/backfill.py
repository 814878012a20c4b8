"""Backfill: when a rule is created or its match changes, the stored signals that no rule had
mapped and that it matches are mapped, with the same identity effects as on arrival.

A backfill is a job kept on its rule: a state (`none` for a disabled rule, `pending`,
`running`, `done`, `cancelled`), a cursor, counts, and when it started, last reported and
finished. Runners (the one worker thread of each process, receiver/rules/worker.py, and
`receiver run-backfills`) claim a pending or stale job with `FOR UPDATE SKIP LOCKED` and a
per-account try-lock, at most `BACKFILL_MAX_PER_ACCOUNT` running per account, then walk the
account's unmapped signals in id order, a chunk per short transaction: it can stop anywhere and
resume, never maps a signal twice (only unmapped ones are touched), and never holds ingestion
back for longer than a chunk. Nothing runs because a rule was read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from receiver import metrics
from receiver.db import run_transaction
from receiver.events import Draft
from receiver.identity import resolve as resolution
from receiver.identity.locks import SHARED, lock_account
from receiver.identity.resolve import Policy
from receiver.models import rules_table, signals_table
from receiver.rules.engine import CompiledRule, compile_rule
from receiver.store import group_key, mapping_columns, widen_lead

log = logging.getLogger(__name__)
CHUNK = 500
# A backfill whose runner has not reported for this long is taken over by the next one.
STALE_AFTER = timedelta(seconds=30)
NONE, PENDING, RUNNING, DONE, CANCELLED = "none", "pending", "running", "done", "cancelled"
# The advisory lock space of claims, apart from the identity locks' (identity/locks.py).
CLAIM_LOCK_NAMESPACE = 0x52_42
# How many claimable jobs one claim looks at, for one whose account is under its cap.
CLAIM_CANDIDATES = 20


def run_pending(
    engine: sa.Engine,
    policy: Policy,
    max_per_account: int,
    stop: threading.Event | None = None,
    echo: Callable[[str], None] | None = None,
) -> int:
    """Claim and run backfills until none is claimable (or stop is set); how many ran."""
    ran = 0
    while stop is None or not stop.is_set():
        job = run_transaction(engine, lambda s: claim_next(s, datetime.now(UTC), max_per_account))
        if job is None:
            break
        state = run_claimed(engine, *job, policy, stop)
        ran += 1
        if echo is not None:
            echo(f"backfill of rule {job[1]} (account {job[0]}): {state}")
    return ran


def claim_next(session: Session, now: datetime, max_per_account: int) -> tuple[int, int] | None:
    """Mark one pending or stale backfill running; its (account_id, rule_id), or None."""
    r = rules_table.c
    claimable = sa.and_(
        r.enabled,
        sa.or_(
            r.backfill_status == PENDING,
            sa.and_(
                r.backfill_status == RUNNING,
                sa.or_(
                    r.backfill_heartbeat_at.is_(None),
                    r.backfill_heartbeat_at < now - STALE_AFTER,
                ),
            ),
        ),
    )
    # Accounts at their cap are left out here already, or thirty pending rules of one account
    # would fill every claim's candidates and hold other accounts' backfills back.
    others = rules_table.alias("running")
    under_cap = (
        sa.select(sa.func.count())
        .where(others.c.account_id == r.account_id, _is_running(others.c, now))
        .scalar_subquery()
        < max_per_account
    )
    candidates = session.execute(
        sa.select(r.account_id, r.id)
        .where(claimable, under_cap)
        .order_by(r.updated_at, r.id)
        .limit(CLAIM_CANDIDATES)
        .with_for_update(skip_locked=True)
    ).all()
    for account_id, rule_id in candidates:
        if _try_lock_claims(session, account_id) and (
            _running(session, account_id, now) < max_per_account
        ):
            session.execute(
                sa.update(rules_table)
                .where(r.account_id == account_id, r.id == rule_id)
                .values(
                    backfill_status=RUNNING,
                    backfill_heartbeat_at=now,
                    backfill_started_at=sa.func.coalesce(r.backfill_started_at, now),
                )
            )
            return account_id, rule_id
    return None


def _try_lock_claims(session: Session, account_id: int) -> bool:
    """Claims of one account, one at a time (so that two cannot both pass its cap); a claim
    that finds it taken moves on to another account's job rather than wait."""
    if session.get_bind().dialect.name != "postgresql":
        return True  # SQLite runs one writing transaction at a time
    return bool(
        session.execute(
            sa.text("SELECT pg_try_advisory_xact_lock(:namespace, :account)"),
            {"namespace": CLAIM_LOCK_NAMESPACE, "account": account_id % 2**31},
        ).scalar()
    )


def _running(session: Session, account_id: int, now: datetime) -> int:
    r = rules_table.c
    return session.execute(
        sa.select(sa.func.count()).where(r.account_id == account_id, _is_running(r, now))
    ).scalar_one()


def _is_running(r: sa.ColumnCollection, now: datetime) -> sa.ColumnElement[bool]:
    """Running, and its runner reported lately."""
    return sa.and_(r.backfill_status == RUNNING, r.backfill_heartbeat_at >= now - STALE_AFTER)


def run_claimed(
    engine: sa.Engine,
    account_id: int,
    rule_id: int,
    policy: Policy,
    stop: threading.Event | None = None,
) -> str:
    """Map chunk after chunk until the job is done, cancelled, changed or gone; its state.
    A runner asked to stop hands the job back as pending, for the next one."""
    log.info("backfill of rule %s (account %s) running", rule_id, account_id)
    try:
        with metrics.BACKFILLS_RUNNING.track_inprogress():
            while not run_transaction(
                engine, lambda s: map_chunk(s, account_id, rule_id, policy, datetime.now(UTC))
            ):
                if stop is not None and stop.is_set():
                    run_transaction(engine, lambda s: _hand_back(s, account_id, rule_id))
                    return PENDING
    except Exception:
        log.exception("backfill of rule %s stopped; a runner resumes it when stale", rule_id)
        return "failed"
    state = run_transaction(engine, lambda s: _state(s, account_id, rule_id))
    log.info("backfill of rule %s (account %s) %s", rule_id, account_id, state)
    return state


def _hand_back(session: Session, account_id: int, rule_id: int) -> None:
    r = rules_table.c
    session.execute(
        sa.update(rules_table)
        .where(r.account_id == account_id, r.id == rule_id, r.backfill_status == RUNNING)
        .values(backfill_status=PENDING, backfill_heartbeat_at=None)
    )


def _state(session: Session, account_id: int, rule_id: int) -> str:
    r = rules_table.c
    state = session.execute(
        sa.select(r.backfill_status).where(r.account_id == account_id, r.id == rule_id)
    ).scalar()
    return state or "deleted"


def map_chunk(
    session: Session, account_id: int, rule_id: int, policy: Policy, now: datetime
) -> bool:
    """Map one chunk; True when the backfill is finished (or the rule is gone)."""
    r, s = rules_table.c, signals_table.c
    # The lock order of identity/locks.py: the rules lock first (shared: a rule change waits
    # for the chunk), then, in _map_rows, the identity locks of what the chunk maps.
    lock_account(session, account_id, SHARED)
    rule = (
        session.execute(
            sa.select(rules_table)
            .where(r.account_id == account_id, r.id == rule_id)
            .with_for_update()
        )
        .mappings()
        .first()
    )
    if rule is None or rule["backfill_status"] != RUNNING:
        return True  # deleted, cancelled, or changed since (then pending, for a new claim)
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
    held = resolution.lock_identities(session, account_id, [draft for _, draft in drafts])
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
    applied = resolution.apply_stored(session, account_id, drafts, now, policy, held)
    applied.deferred.dequeued.update(
        group_key(d.source, d.event_type, d.event_name) for _, d in drafts
    )
    for lead_id in sorted(applied.spans):
        widen_lead(session, account_id, lead_id, *applied.spans[lead_id])
    applied.deferred.flush(session, account_id)
    return len(drafts)
