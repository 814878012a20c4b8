"""Ingestion: parsed events in, stored signals and one result per event out.

Functions here take a session and `now`, and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver.accounts import Sender
from receiver.identity import resolve
from receiver.identity.locks import EXCLUSIVE, SHARED, lock_account
from receiver.identity.resolve import Applied, Policy
from receiver.ingest import store
from receiver.ingest.segment import Draft, InvalidEvent, readable_message_id, to_draft
from receiver.models import accounts_table
from receiver.rules import engine

log = logging.getLogger(__name__)
DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Prepared:
    """Each event of a body as a Draft, or as the reason it is invalid."""

    items: list[Draft | InvalidEvent]

    @property
    def drafts(self) -> list[Draft]:
        return [item for item in self.items if isinstance(item, Draft)]


@dataclass
class Outcome:
    results: list[dict[str, Any]]
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0

    def body(self) -> dict[str, Any]:
        return {
            "received": len(self.results),
            "stored": self.stored,
            "duplicates": self.duplicates,
            "results": self.results,
        }


class OverBudget(Exception):
    """The new signals of a body do not all fit in the month's limit."""

    def __init__(
        self,
        sender: Sender,
        prepared: Prepared,
        new_hashes: list[bytes],
        now: datetime,
        policy: Policy,
    ) -> None:
        super().__init__("over the month's limit")
        self.sender = sender
        self.prepared = prepared
        self.new_hashes = new_hashes
        self.now = now
        self.policy = policy

    def store_what_fits(self, session: Session) -> Outcome:
        return store_within_budget(
            session, self.sender, self.prepared, self.now, self.new_hashes, self.policy
        )


def prepare(
    events: Sequence[Any],
    received_at: datetime,
    max_event_bytes: int,
    default_type: str | None = None,
) -> Prepared:
    items: list[Draft | InvalidEvent] = []
    for event in events:
        try:
            items.append(to_draft(event, received_at, max_event_bytes, default_type))
        except InvalidEvent as invalid:
            invalid.message_id = readable_message_id(event)
            items.append(invalid)
    return Prepared(items)


def store_all(
    session: Session,
    sender: Sender,
    prepared: Prepared,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    exclusive: bool = False,
) -> Outcome:
    """Store every new signal, or raise OverBudget if they do not fit in the month's limit."""
    drafts = map_and_lock(session, sender.account_id, prepared.drafts, exclusive)
    applied = _apply(session, sender.account_id, drafts, now, policy)
    period_start, _ = store.period_of(now)
    if not store.claim_usage(
        session, sender.account_id, period_start, len(applied.inserted), sender.signal_limit
    ):
        new_hashes = [d.content_hash for d in drafts if d.content_hash in applied.inserted]
        raise OverBudget(sender, prepared, new_hashes, now, policy)
    return outcome_of(prepared, applied, accepted=len(drafts))


def store_within_budget(
    session: Session,
    sender: Sender,
    prepared: Prepared,
    now: datetime,
    new_hashes: Sequence[bytes],
    policy: Policy = DEFAULT_POLICY,
) -> Outcome:
    """Store the events of a body up to the last new one that still fits in the limit.
    The counter stays locked until commit, so what is left cannot shrink meanwhile."""
    drafts = map_and_lock(session, sender.account_id, prepared.drafts, exclusive=True)
    period_start, _ = store.period_of(now)
    remaining = store.lock_remaining_usage(
        session, sender.account_id, period_start, sender.signal_limit
    )
    fitting = set(new_hashes[:remaining])
    accepted = len(drafts)
    for position, draft in enumerate(drafts):
        if draft.content_hash in new_hashes and draft.content_hash not in fitting:
            accepted = position
            break
    applied = _apply(session, sender.account_id, drafts[:accepted], now, policy)
    if not store.claim_usage(
        session, sender.account_id, period_start, len(applied.inserted), sender.signal_limit
    ):
        raise AssertionError("a locked counter refused what it had left")
    return outcome_of(prepared, applied, accepted)


def map_and_lock(
    session: Session, account_id: int, drafts: list[Draft], exclusive: bool
) -> list[Draft]:
    """Take the account's identity lock, then map the drafts with the account's rules as
    they stand under that lock (a rule change waits for the lock, so no event is matched
    against rules older than a finished backfill). Raises NeedsExclusive when the rules
    give identity effects that the shared lock does not cover."""
    exclusive = exclusive or any(resolve.changes_identity(d) for d in drafts)
    lock_account(session, account_id, EXCLUSIVE if exclusive else SHARED)
    rules = engine.active_rules(session, account_id, rules_version(session, account_id))
    if rules:
        drafts = mapped(rules, drafts)
        if not exclusive and any(resolve.changes_identity(d) for d in drafts):
            raise NeedsExclusive()
    return drafts


def mapped(rules: Sequence[engine.CompiledRule], drafts: list[Draft]) -> list[Draft]:
    """The drafts, each with the match of the first rule that maps it (or none), within
    one evaluation budget for the whole body."""
    budget = engine.Budget()
    return [
        replace(
            d,
            match=engine.first_match(
                rules, d.source, d.event_type, d.event_name, d.payload, budget
            ),
        )
        for d in drafts
    ]


class NeedsExclusive(Exception):
    """Run the transaction again, with the account's identity lock taken exclusive."""


def rules_version(session: Session, account_id: int) -> int:
    return session.connection().execute(_RULES_VERSION, {"account_id": account_id}).scalar_one()


_RULES_VERSION = sa.select(accounts_table.c.rules_version).where(
    accounts_table.c.id == sa.bindparam("account_id")
)


def _apply(
    session: Session, account_id: int, drafts: Sequence[Draft], now: datetime, policy: Policy
) -> Applied:
    """Store drafts in order: runs of plain events set-based, identity events one by one, so
    that each event sees the identities of the events before it."""
    applied = Applied()
    run: list[Draft] = []
    for draft in drafts:
        if resolve.changes_identity(draft):
            resolve.store_run(session, account_id, run, now, applied)
            run = []
            resolve.apply_identity_event(session, account_id, draft, now, policy, applied)
        else:
            run.append(draft)
    resolve.store_run(session, account_id, run, now, applied)
    if applied.cold and any(resolve.changes_identity(d) for d in drafts):
        # An identify later in the body may have rehydrated signals stored cold before it.
        applied.cold = store.still_cold(session, account_id, applied.cold)
    if applied.blocked:
        log.warning("identifiers blocked from linking (too many leads): %d", len(applied.blocked))
    return applied


def invalid_result(invalid: InvalidEvent) -> dict[str, Any]:
    return {"status": "invalid", "messageId": invalid.message_id, "message": str(invalid)}


def outcome_of(prepared: Prepared, applied: Applied, accepted: int) -> Outcome:
    """One result per event, in order. Of two copies in one body, the first is stored."""
    outcome = Outcome(results=[])
    claimed: set[bytes] = set()
    position = 0
    for item in prepared.items:
        if isinstance(item, InvalidEvent):
            outcome.results.append(invalid_result(item))
            continue
        result = {"status": "duplicate", "messageId": item.message_id}
        if position >= accepted:
            result["status"] = "rejected"
            outcome.rejected += 1
        elif item.content_hash in applied.deleted:
            # Carried out, and counted as stored so that the counts add up to what was received;
            # the request itself is not kept (it would keep the identifiers it deleted).
            result.update(status="stored", action="deleted")
            outcome.stored += 1
        elif item.content_hash in applied.inserted and item.content_hash not in claimed:
            claimed.add(item.content_hash)
            result["status"] = "cold" if item.content_hash in applied.cold else "stored"
            outcome.stored += 1
        else:
            outcome.duplicates += 1
        position += 1
        outcome.results.append(result)
    return outcome
