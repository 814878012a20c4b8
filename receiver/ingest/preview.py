"""What a draft rule would do to an arriving event and to the Signal Queue, computed without
storing anything. Here, not in rules/: it reads the sample as ingestion reads an event
(segment.to_draft), and ingestion is the layer above the rules."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver.identity.leads import lead_ids_by_email
from receiver.ingest.segment import to_draft
from receiver.models import queue_table, signals_table
from receiver.rules.engine import CompiledRule, compile_rule, matched_email

SCAN_LIMIT = 5_000


def try_rule(
    session: Session,
    account_id: int,
    rule_data: Mapping[str, Any],
    payload: Any,
    now: datetime,
    max_event_bytes: int,
) -> dict[str, Any]:
    """Whether the draft rule matches payload, read as an arriving event, and what it
    extracts; and what it would map among the queued signals (estimate). Raises
    events.InvalidEvent for a payload the receiver would not store."""
    rule = compile_rule(rule_data)
    event = to_draft(payload, now, max_event_bytes)
    matches = rule.matches(event.source, event.event_type, event.event_name, event.payload)
    match = rule.match(event.payload) if matches else None
    return {
        "matches": matches,
        "mapped_name": match.name if match else None,
        "score": match.score if match else None,
        "fields": match.fields if match else {},
        "email": matched_email(match) if match else None,
        "queue": estimate(session, account_id, rule),
    }


def estimate(session: Session, account_id: int, rule: CompiledRule) -> dict[str, Any]:
    """Matches among the newest SCAN_LIMIT queued signals the rule could apply to, and how
    many leads their emails would create; `complete` says whether that was all of them."""
    q, s = queue_table.c, signals_table.c
    filters = [
        (q.source, s.source, rule.source),
        (q.event_type, s.event_type, rule.event_type),
        (q.event_name, s.event_name, rule.event_name),
    ]
    candidates = session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(q.count), 0)).where(
            q.account_id == account_id,
            q.count > 0,
            *[group == value for group, _, value in filters if value is not None],
        )
    ).scalar_one()
    rows = session.execute(
        sa.select(s.source, s.event_type, s.event_name, s.payload)
        .where(
            s.account_id == account_id,
            s.rule_id.is_(None),
            *[column == value for _, column, value in filters if value is not None],
        )
        .order_by(s.id.desc())
        .limit(SCAN_LIMIT)
    ).all()
    matched = [
        rule.match(r.payload)
        for r in rows
        if rule.matches(r.source, r.event_type, r.event_name, r.payload)
    ]
    emails = {e for m in matched if (e := matched_email(m)) is not None}
    known = set(lead_ids_by_email(session, account_id, sorted(emails))) if emails else set()
    return {
        "candidates": int(candidates),
        "scanned": len(rows),
        "matches": len(matched),
        "leads_created": len(emails - known),
        "complete": len(rows) >= candidates,
    }
