"""Cold-storage retention: cold signals older than their account's retention are deleted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

import sqlalchemy as sa
from sqlmodel import Session, col

from receiver import progress
from receiver.db import run_transaction
from receiver.models import Account, signals_table
from receiver.store import group_key, take_out_of_queue

PURGE_CHUNK = 5_000


def purge_cold(
    engine: sa.Engine,
    now: datetime,
    echo: Callable[[str], None],
    older_than_days: int | None = None,
    chunk: int = PURGE_CHUNK,
    terminal: bool = False,
) -> int:
    """Delete, account by account and in chunks of their own short transactions (so ingestion
    never waits long), the cold signals received before the retention cut-off. On a terminal,
    a progress bar per account stands for the line per chunk."""
    accounts = run_transaction(
        engine,
        lambda session: session.execute(
            sa.select(col(Account.id), col(Account.cold_retention_days)).order_by(col(Account.id))
        ).all(),
    )
    total = 0
    for account_id, retention_days in accounts:
        cutoff = now - timedelta(
            days=older_than_days if older_than_days is not None else retention_days
        )
        delete_chunk = partial(_delete_chunk, account_id=account_id, cutoff=cutoff, chunk=chunk)
        expired = partial(
            run_transaction, engine, partial(_count, account_id=account_id, cutoff=cutoff)
        )
        deleted = 0
        with progress.reporter(
            expired, f"account {account_id}", "signals", echo, terminal
        ) as report:
            while removed := run_transaction(engine, delete_chunk):
                deleted += removed
                report.advance(
                    removed,
                    f"account {account_id}: {deleted} cold signals received before "
                    f"{cutoff:%Y-%m-%d %H:%M} deleted so far",
                )
        total += deleted
    echo(f"purged {total} cold signals")
    return total


def _count(session: Session, account_id: int, cutoff: datetime) -> int:
    s = signals_table.c
    return session.execute(
        sa.select(sa.func.count())
        .select_from(signals_table)
        .where(s.account_id == account_id, s.is_cold, s.received_at < cutoff)
    ).scalar_one()


def _delete_chunk(session: Session, account_id: int, cutoff: datetime, chunk: int) -> int:
    s = signals_table.c
    expired = (
        sa.select(s.id)
        .where(s.account_id == account_id, s.is_cold, s.received_at < cutoff)
        .limit(chunk)
    )
    deleted = session.execute(
        sa.delete(signals_table)
        .where(s.account_id == account_id, s.id.in_(expired.scalar_subquery()))
        .returning(s.source, s.event_type, s.event_name, s.rule_id)
    ).all()
    take_out_of_queue(
        session,
        account_id,
        [group_key(r.source, r.event_type, r.event_name) for r in deleted if r.rule_id is None],
    )
    return len(deleted)
