"""Ingestion: parsed events in, stored signals and one result per event out.

Functions here take a session and `now`, and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver.accounts import Sender
from receiver.identity import resolve
from receiver.identity.locks import SHARED, lock_account
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


def store_body(
    session: Session,
    sender: Sender,
    prepared: Prepared,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
) -> Outcome:
    """Store every new signal of the body that fits in the month's limit, with its identity
    effects. A body that does not all fit is settled here too: its work is undone to a
    savepoint and redone for the events up to the last new one that fits, with the counter
    locked, so what is left of the limit cannot shrink meanwhile."""
    account_id = sender.account_id
    drafts = map_and_lock(session, account_id, prepared.drafts)
    period_start, _ = store.period_of(now)
    attempt = session.begin_nested()
    applied = resolve.apply(session, account_id, drafts, now, policy)
    accepted = len(drafts)
    if _settle(session, sender, applied, period_start, now):
        attempt.commit()
    else:
        attempt.rollback()
        new_hashes = [d.content_hash for d in drafts if d.content_hash in applied.inserted]
        remaining = store.lock_remaining_usage(
            session, account_id, period_start, sender.signal_limit
        )
        accepted = _fitting(drafts, new_hashes, remaining)
        applied = resolve.apply(session, account_id, drafts[:accepted], now, policy)
        if not _settle(session, sender, applied, period_start, now):
            raise AssertionError("a locked counter refused what it had left")
    applied.deferred.flush(session, account_id)
    if applied.blocked:
        log.warning("identifiers blocked from linking (too many leads): %d", len(applied.blocked))
    return outcome_of(prepared, applied, accepted)


def _settle(
    session: Session, sender: Sender, applied: Applied, period_start: date, now: datetime
) -> bool:
    return store.settle(
        session,
        sender.account_id,
        period_start,
        sender.signal_limit,
        applied.new,
        applied.spans,
        now,
    )


def _fitting(drafts: Sequence[Draft], new_hashes: Sequence[bytes], remaining: int) -> int:
    """How many drafts, from the first, fit when only `remaining` new signals may be stored."""
    fitting = set(new_hashes[:remaining])
    for position, draft in enumerate(drafts):
        if draft.content_hash in new_hashes and draft.content_hash not in fitting:
            return position
    return len(drafts)


def map_and_lock(session: Session, account_id: int, drafts: list[Draft]) -> list[Draft]:
    """Take the account's rules lock shared and map the drafts with the rules as they stand
    under it (a rule change takes it exclusive, so no event is matched against rules older
    than a finished backfill); then take the identity locks the mapped drafts need."""
    lock_account(session, account_id, SHARED)
    rules = engine.active_rules(session, account_id, rules_version(session, account_id))
    if rules:
        drafts = mapped(rules, drafts)
    resolve.lock_identities(session, account_id, drafts)
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


def rules_version(session: Session, account_id: int) -> int:
    return session.connection().execute(_RULES_VERSION, {"account_id": account_id}).scalar_one()


_RULES_VERSION = sa.select(accounts_table.c.rules_version).where(
    accounts_table.c.id == sa.bindparam("account_id")
)


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


def with_client_ip(prepared: Prepared, client_ip: str) -> Prepared:
    """Each event with `context.ip` set to the client's address where it has none, as
    Segment's API does. Called after the content hash is taken, so a redelivery from
    another address is still a duplicate."""
    return Prepared(
        [_with_ip(item, client_ip) if isinstance(item, Draft) else item for item in prepared.items]
    )


def _with_ip(draft: Draft, client_ip: str) -> Draft:
    context = draft.payload.get("context")
    context = {} if context is None else context
    if not isinstance(context, dict) or "ip" in context:
        return draft
    return replace(draft, payload={**draft.payload, "context": {**context, "ip": client_ip}})
