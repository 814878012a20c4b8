"""Writes to rows that every writer of an account shares (leads, Signal Queue groups), held
back until the end of the transaction, after the month's usage counter is claimed.

Lock order (locks.py, order 4): the counter, then leads in id order, then queue groups in key
order. A transaction that wrote a lead before claiming the counter could wait for the counter
held by another that waits for that lead: a deadlock. So identity resolution records here what
leads should become, and `flush` writes it all, in order, once the counter is held. (The spans
and queue counts of new signals are written by store.settle, which claims the counter.)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from receiver import store
from receiver.identity import leads
from receiver.identity.enrichment import lead_fields, merge_traits


@dataclass
class Deferred:
    enrichments: dict[int, list[tuple[dict[str, Any], datetime]]] = field(default_factory=dict)
    groups: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    dequeued: Counter[store.GroupKey] = field(default_factory=Counter)
    deleted_leads: set[int] = field(default_factory=set)
    # Leads this transaction created: no other can see them until it commits, so their
    # traits are still the empty ones they were inserted with, and need no read.
    created: set[int] = field(default_factory=set)

    def enrich(self, lead_id: int, traits: dict[str, Any], at: datetime) -> None:
        """Traits to merge into the lead, each kept only if no newer event set it already."""
        self.enrichments.setdefault(lead_id, []).append((traits, at))

    def record_group(self, lead_id: int, group_id: str, name: str | None) -> None:
        self.groups[lead_id] = (group_id, name)

    def flush(self, session: Session, account_id: int) -> None:
        """Write everything held back, in the lock order: leads by id, then queue groups.
        A lead's traits are read again under its row lock and the body's merged into them: a
        returning visitor's identify holds no exclusive lock of its lead (resolve.py), so
        another body may have enriched it since it was read. A lead this transaction created
        has the traits it was created with."""
        enriched = sorted(set(self.enrichments) - self.deleted_leads)
        stored = leads.lock_traits(
            session, account_id, [lead_id for lead_id in enriched if lead_id not in self.created]
        )
        as_created: leads.LeadTraits = ({}, {}, None)  # merge_traits copies, never changes it
        changes = {}
        for lead_id in enriched:
            found = as_created if lead_id in self.created else stored.get(lead_id)
            if found is None:
                continue  # deleted since it was read
            traits, times, company = found
            for incoming, at in self.enrichments[lead_id]:
                traits, times = merge_traits(traits, times, incoming, at)
            fields = lead_fields(traits)
            if fields["company"] is None:
                fields["company"] = company  # from a group call, until traits name one
            changes[lead_id] = {"traits": traits, "trait_times": times, **fields}
        leads.write_traits(session, account_id, changes)
        leads.write_companies(
            session,
            account_id,
            {lead: g for lead, g in self.groups.items() if lead not in self.deleted_leads},
        )
        store.take_out_of_queue(session, account_id, self.dequeued.elements())
