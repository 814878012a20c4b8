"""The values every layer passes along, below all of them: an event ready to store (Draft),
one that cannot be (InvalidEvent), what a mapping rule makes of an event (Match), and where a
new signal goes (Placement). Plain data, no store, no rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Match:
    """What the mapping rule that maps an event makes of it."""

    rule_id: int
    name: str | None
    score: int | None
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Draft:
    """An event ready to store: what the signals table indexes, and its content hash."""

    source: str
    event_type: str | None
    event_name: str | None
    anonymous_id: str | None
    user_id: str | None
    message_id: str | None
    occurred_at: datetime
    payload: dict[str, Any]
    content_hash: bytes
    match: Match | None = None  # the mapping rule's, set in the transaction that stores it


class InvalidEvent(ValueError):
    """An event this receiver cannot store; the message says why."""

    message_id: str | None = None  # the event's, when it has a readable one, for its result


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a signal goes: onto a lead, into cold storage, or neither (generic)."""

    lead_id: int | None
    is_cold: bool
    linked_by: int | None = None  # the identity event that moved it there
