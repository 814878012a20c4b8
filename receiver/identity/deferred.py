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
from receiver.identity.replay import LeadTraits


@dataclass
class Deferred:
    traits: dict[int, LeadTraits] = field(default_factory=dict)
    groups: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    dequeued: Counter[store.GroupKey] = field(default_factory=Counter)
    deleted_leads: set[int] = field(default_factory=set)

    def preload(self, lead_id: int, state: LeadTraits) -> None:
        """A lead's traits as read under its identity lock (held, so no other writer of them
        runs until commit), unless this transaction has merged into them already."""
        self.traits.setdefault(lead_id, state)

    def enrich_in_memory(self, lead_id: int, traits: dict[str, Any], at: datetime) -> None:
        """Merge traits into the lead, each kept only if no newer event set it already."""
        state = self.traits[lead_id]
        state.traits, state.trait_times = merge_traits(state.traits, state.trait_times, traits, at)
        state.changed = True

    def record_group(self, lead_id: int, group_id: str, name: str | None) -> None:
        self.groups[lead_id] = (group_id, name)

    def flush(self, session: Session, account_id: int) -> None:
        """Write everything held back, in the lock order: leads by id, then queue groups."""
        changes = {}
        for lead_id, state in self.traits.items():
            if state.changed and lead_id not in self.deleted_leads:
                fields = lead_fields(state.traits)
                if fields["company"] is None:
                    fields["company"] = state.company  # from a group call, until traits name one
                changes[lead_id] = {
                    "traits": state.traits,
                    "trait_times": state.trait_times,
                    **fields,
                }
        leads.write_traits(session, account_id, changes)
        leads.write_companies(
            session,
            account_id,
            {lead: g for lead, g in self.groups.items() if lead not in self.deleted_leads},
        )
        store.take_out_of_queue(session, account_id, self.dequeued.elements())
