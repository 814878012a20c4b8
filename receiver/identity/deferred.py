"""Writes to rows that every writer of an account shares (leads, Signal Queue groups), held
back until the end of the transaction, after the month's usage counter is claimed.

Lock order (locks.py, order 4): the counter, then leads in id order, then queue groups in key
order. A transaction that wrote a lead before claiming the counter could wait for the counter
held by another that waits for that lead: a deadlock. So identity resolution and the storing of
signals record what leads and groups should become here, and `flush` writes it all, in order,
once the counter is held.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from receiver.identity import leads
from receiver.identity.enrichment import lead_fields, merge_traits
from receiver.ingest.segment import Draft
from receiver.rules import queue


@dataclass
class LeadState:
    """A lead's traits as this transaction has merged them so far."""

    traits: dict[str, Any]
    trait_times: dict[str, str]
    company: str | None
    changed: bool = False


@dataclass
class Deferred:
    spans: dict[int, tuple[datetime, datetime]] = field(default_factory=dict)
    states: dict[int, LeadState] = field(default_factory=dict)
    groups: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    queued: list[Draft] = field(default_factory=list)
    dequeued: Counter[queue.GroupKey] = field(default_factory=Counter)
    deleted_leads: set[int] = field(default_factory=set)

    def widen(self, lead_id: int, earliest: datetime, latest: datetime) -> None:
        span = self.spans.get(lead_id)
        self.spans[lead_id] = (
            (earliest, latest) if span is None else (min(span[0], earliest), max(span[1], latest))
        )

    def enrich(
        self, session: Session, account_id: int, lead_id: int, traits: dict[str, Any], at: datetime
    ) -> None:
        """Merge traits into the lead, each kept only if no newer event set it already. The
        lead is read, not locked: its identity lock (held) keeps other writers of its traits
        out until commit."""
        state = self.states.get(lead_id)
        if state is None:
            row = leads.traits_of_lead(session, account_id, lead_id)
            state = self.states[lead_id] = LeadState(row.traits, row.trait_times, row.company)
        state.traits, state.trait_times = merge_traits(state.traits, state.trait_times, traits, at)
        state.changed = True

    def record_group(self, lead_id: int, group_id: str, name: str | None) -> None:
        self.groups[lead_id] = (group_id, name)

    def flush(self, session: Session, account_id: int, now: datetime) -> None:
        """Write everything held back, in the lock order: leads by id, then queue groups."""
        for lead_id in sorted(set(self.spans) | set(self.states) | set(self.groups)):
            if lead_id in self.deleted_leads:
                continue
            state = self.states.get(lead_id)
            values: dict[str, Any] = {}
            if state is not None and state.changed:
                fields = lead_fields(state.traits)
                company = fields["company"] if fields["company"] is not None else state.company
                values = {
                    "traits": state.traits,
                    "trait_times": state.trait_times,
                    **fields,
                    "company": company,
                }
            leads.write(
                session,
                account_id,
                lead_id,
                values,
                self.spans.get(lead_id),
                self.groups.get(lead_id),
            )
        queue.record(session, account_id, self.queued, now)
        queue.forget(session, account_id, self.dequeued.elements())
