"""Set-based writes of signals and of the plan counter. Uniqueness is the database's job:
every insert is ON CONFLICT DO NOTHING, never a read before a write."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from receiver.ingest.segment import Draft
from receiver.models import signals_table, usage_table


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a new signal goes: onto a lead, into cold storage, or neither (generic)."""

    lead_id: int | None
    is_cold: bool


def upsert(session: Session, table: sa.Table) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def prepared(session: Session, build: Callable[[Any], Any]) -> Any:
    """The statement build makes from the dialect's insert(), built once per dialect: the hot
    path then spends no time constructing SQL expressions."""
    return _built(session.get_bind().dialect.name, build)


@functools.cache
def _built(dialect: str, build: Callable[[Any], Any]) -> Any:
    return build(postgresql.insert if dialect == "postgresql" else sqlite.insert)


def _signal_insert(insert: Any) -> Any:
    c = signals_table.c
    return (
        insert(signals_table)
        .on_conflict_do_nothing(index_elements=[c.account_id, c.content_hash])
        .returning(c.content_hash, c.id)
    )


def _usage_claim(insert: Any) -> Any:
    c = usage_table.c
    count = sa.bindparam("count", type_=sa.BigInteger)
    statement = insert(usage_table).values(
        account_id=sa.bindparam("account_id"), period_start=sa.bindparam("period_start"), used=count
    )
    return statement.on_conflict_do_update(
        index_elements=[c.account_id, c.period_start],
        set_={"used": c.used + count},
        where=c.used + count <= sa.bindparam("limit", type_=sa.BigInteger),
    ).returning(c.used)


def insert_signals(
    session: Session,
    account_id: int,
    drafts: Sequence[Draft],
    placements: Sequence[Placement],
    received_at: datetime,
) -> dict[bytes, int]:
    """Insert the drafts in as few statements as the driver allows; returns the id of each
    newly stored signal by content hash. Duplicates of stored signals are skipped."""
    if not drafts:
        return {}
    rows = [
        {"account_id": account_id, "received_at": received_at, **signal_columns(d, p)}
        for d, p in zip(drafts, placements, strict=True)
    ]
    inserted = session.connection().execute(prepared(session, _signal_insert), rows)
    return {digest: signal_id for digest, signal_id in inserted}


def signal_columns(draft: Draft, placement: Placement) -> dict[str, Any]:
    """A new signal's row, but for its account and when it was received."""
    return {**event_columns(draft), "lead_id": placement.lead_id, "is_cold": placement.is_cold}


def event_columns(draft: Draft) -> dict[str, Any]:
    """A new signal's columns that its event alone decides: all but where it was placed."""
    return {
        "source": draft.source,
        "event_type": draft.event_type,
        "event_name": draft.event_name,
        "anonymous_id": draft.anonymous_id,
        "user_id": draft.user_id,
        "message_id": draft.message_id,
        "content_hash": draft.content_hash,
        "payload": draft.payload,
        "occurred_at": draft.occurred_at,
        **mapping_columns(draft),
    }


def mapping_columns(draft: Draft) -> dict[str, Any]:
    match = draft.match
    if match is None:
        return {"rule_id": None, "mapped_name": None, "score": None, "mapped_fields": None}
    return {
        "rule_id": match.rule_id,
        "mapped_name": match.name,
        "score": match.score,
        "mapped_fields": match.fields,
    }


def period_of(now: datetime) -> tuple[date, datetime]:
    """The calendar month (UTC) holding now: its first day, and when the next one starts."""
    start = now.date().replace(day=1)
    next_year, next_month = (
        (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    )
    return start, datetime(next_year, next_month, 1, tzinfo=now.tzinfo)


def claim_usage(
    session: Session, account_id: int, period_start: date, count: int, limit: int
) -> bool:
    """Add count to the month's counter if the total stays within limit, atomically. The row
    lock this takes is held until commit, so concurrent claims can never overshoot."""
    if count == 0:
        return True
    if count > limit:
        return False
    claimed = session.connection().execute(
        prepared(session, _usage_claim),
        {"account_id": account_id, "period_start": period_start, "count": count, "limit": limit},
    )
    return claimed.first() is not None


def lock_remaining_usage(session: Session, account_id: int, period_start: date, limit: int) -> int:
    """How much of the limit is left this month, with the counter locked until commit."""
    c = usage_table.c
    session.execute(
        upsert(session, usage_table)
        .values(account_id=account_id, period_start=period_start, used=0)
        .on_conflict_do_nothing(index_elements=[c.account_id, c.period_start])
    )
    used = session.execute(
        sa.select(c.used)
        .where(c.account_id == account_id, c.period_start == period_start)
        .with_for_update()
    ).scalar_one()
    return max(0, limit - used)


def used_this_period(session: Session, account_id: int, period_start: date) -> int:
    c = usage_table.c
    used = session.execute(
        sa.select(c.used).where(c.account_id == account_id, c.period_start == period_start)
    ).scalar()
    return used or 0


def attach(session: Session, account_id: int, signal_id: int, lead_id: int, now: datetime) -> None:
    """Put one signal on a lead (the event that resolved it, whatever identifiers it had). A
    signal already on that lead keeps the provenance it has: what linked it first."""
    c = signals_table.c
    session.execute(
        sa.update(signals_table)
        .where(
            c.account_id == account_id,
            c.id == signal_id,
            sa.or_(c.lead_id.is_(None), c.lead_id != lead_id),
        )
        .values(lead_id=lead_id, is_cold=False, linked_by_signal_id=signal_id, linked_at=now)
    )


def still_cold(session: Session, account_id: int, hashes: set[bytes]) -> set[bytes]:
    c = signals_table.c
    rows = session.execute(
        sa.select(c.content_hash).where(
            c.account_id == account_id, c.is_cold, c.content_hash.in_(hashes)
        )
    )
    return set(rows.scalars())
