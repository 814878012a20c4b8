"""The Signal Queue: unmapped signals grouped by source, event type and event name, kept as
a summary table that ingestion maintains, so listing it costs no scan of the signals."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver.models import queue_table
from receiver.rules.paths import MISSING, resolve

SUGGESTED_FIELDS = {
    "email": ("traits.email", "properties.email", "context.traits.email"),
    "name": ("traits.name", "properties.name", "context.traits.name"),
    "company": ("traits.company", "properties.company", "context.traits.company"),
    "title": ("traits.title", "properties.title", "context.traits.title"),
}


def list_groups(
    session: Session, account_id: int, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    q = queue_table.c
    visible = (q.account_id == account_id, q.count > 0)
    total = session.execute(sa.select(sa.func.count()).where(*visible)).scalar_one()
    rows = session.execute(
        sa.select(queue_table)
        .where(*visible)
        .order_by(q.count.desc(), q.source, q.event_type, q.event_name)
        .limit(limit)
        .offset(offset)
    ).mappings()
    return total, [_group(row) for row in rows]


def _group(row: Any) -> dict[str, Any]:
    event_type, event_name = row["event_type"] or None, row["event_name"] or None
    return {
        "source": row["source"],
        "event_type": event_type,
        "event_name": event_name,
        "count": row["count"],
        "first_seen": row["first_seen_at"],
        "last_seen": row["last_seen_at"],
        "sample": row["sample"],
        "suggested_rule": suggest_rule(row["source"], event_type, event_name, row["sample"]),
    }


def suggest_rule(
    source: str, event_type: str | None, event_name: str | None, sample: Any
) -> dict[str, Any]:
    """A rule that maps this group, with the fields its sample holds already mapped."""
    fields = {}
    for name, paths in SUGGESTED_FIELDS.items():
        found = next((path for path in paths if resolve(sample, path) is not MISSING), None)
        if found is not None:
            fields[name] = found
    label = event_name or event_type or source
    return {
        "name": label,
        "enabled": True,
        "priority": 100,
        "source": source,
        "event_type": event_type,
        "event_name": event_name,
        "conditions": [],
        "fields": fields,
        "signal": {"name": label, "score": 10},
    }
