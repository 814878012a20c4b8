"""The Signal Queue: unmapped signals grouped by source, event type and event name, kept as
a summary table that ingestion maintains, so listing it costs no scan of the signals."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver.models import queue_table
from receiver.rules.paths import MISSING, resolve

# Where each lead field is found, per Segment call, first path first. An identify's traits
# are the person's; a group's traits are the company's (its `name` is the company name, its
# `email` the company's), so the person's fields come from `context.traits` only; a track's or
# page's properties are the event's (a page's `name` is the page's, a product's `name` the
# product's), so only fields that cannot mean anything else are read from them.
_PERSON_IN_CONTEXT = {
    "email": ("context.traits.email",),
    "name": ("context.traits.name",),
    "first_name": ("context.traits.first_name", "context.traits.firstName"),
    "last_name": ("context.traits.last_name", "context.traits.lastName"),
    "company": ("context.traits.company.name", "context.traits.company"),
    "title": ("context.traits.title",),
}
_FROM_PROPERTIES = {
    "email": ("properties.email", *_PERSON_IN_CONTEXT["email"]),
    "name": _PERSON_IN_CONTEXT["name"],
    "first_name": ("properties.first_name", "properties.firstName", "context.traits.first_name"),
    "last_name": ("properties.last_name", "properties.lastName", "context.traits.last_name"),
    "company": ("properties.company", *_PERSON_IN_CONTEXT["company"]),
    "title": ("properties.title", *_PERSON_IN_CONTEXT["title"]),
}
SUGGESTED_FIELDS: dict[str | None, dict[str, tuple[str, ...]]] = {
    "identify": {
        "email": ("traits.email", "context.traits.email"),
        "name": ("traits.name",),
        "first_name": ("traits.first_name", "traits.firstName"),
        "last_name": ("traits.last_name", "traits.lastName"),
        "company": ("traits.company.name", "traits.company"),
        "title": ("traits.title",),
    },
    "group": {**_PERSON_IN_CONTEXT, "company": ("traits.name",)},
    "track": _FROM_PROPERTIES,
    "page": _FROM_PROPERTIES,
    "screen": _FROM_PROPERTIES,
    "alias": _PERSON_IN_CONTEXT,
    # A generic webhook's JSON has no known meaning: an email is the one field worth offering.
    None: {"email": ("email", "properties.email", "traits.email")},
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


def get_group(
    session: Session, account_id: int, source: str, event_type: str | None, event_name: str | None
) -> dict[str, Any] | None:
    """One group of the queue, as list_groups shows it; None when it is not queued (any more)."""
    q = queue_table.c
    row = (
        session.execute(
            sa.select(queue_table).where(
                q.account_id == account_id,
                q.source == source,
                q.event_type == (event_type or ""),
                q.event_name == (event_name or ""),
                q.count > 0,
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _group(row)


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
    """A rule that maps this group, with the lead fields its sample holds already mapped as
    that kind of Segment call means them (SUGGESTED_FIELDS); an unknown type suggests none."""
    fields = {}
    known = SUGGESTED_FIELDS.get(event_type if source == "segment" else None)
    for name, paths in (known or {}).items():
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
