"""Payloads of recent signals to show beside a rule or a queue group: read from the account's
newest signals only, through its primary key newest first, so that a page's read is bounded
however many signals the account has; the price is finding fewer, or none, of a group or
rule that has had nothing recent."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver.models import signals_table


def newest_queued(
    session: Session,
    account_id: int,
    source: str,
    event_type: str | None,
    event_name: str | None,
    limit: int,
    window: int,
) -> list[Any]:
    """Payloads of up to `limit` of the group's newest queued signals, among the account's
    `window` newest queued signals (the unmapped-signals index)."""
    s = signals_table.c
    recent = (
        sa.select(s.id, s.source, s.event_type, s.event_name, s.payload)
        .where(s.account_id == account_id, s.rule_id.is_(None))
        .order_by(s.id.desc())
        .limit(window)
        .subquery()
    )
    r = recent.c
    return list(
        session.execute(
            sa.select(r.payload)
            .where(
                r.source == source,
                r.event_type.is_(None) if event_type is None else r.event_type == event_type,
                r.event_name.is_(None) if event_name is None else r.event_name == event_name,
            )
            .order_by(r.id.desc())
            .limit(limit)
        ).scalars()
    )


def newest_mapped(session: Session, account_id: int, rule_id: int, window: int) -> Any | None:
    """The payload of the newest signal the rule mapped, among the account's `window` newest
    signals; None when there is none there."""
    s = signals_table.c
    recent = (
        sa.select(s.id, s.rule_id, s.payload)
        .where(s.account_id == account_id)
        .order_by(s.id.desc())
        .limit(window)
        .subquery()
    )
    r = recent.c
    return session.execute(
        sa.select(r.payload).where(r.rule_id == rule_id).order_by(r.id.desc()).limit(1)
    ).scalar()
