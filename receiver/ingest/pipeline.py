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

from receiver import store
from receiver.accounts import Sender, find_sender
from receiver.credentials import API_KEY_KIND, Credential, parse_credential
from receiver.db import DriverCursor, StartOver
from receiver.events import Draft, InvalidEvent
from receiver.identity import resolve
from receiver.identity.locks import LOCK_NAMESPACE
from receiver.identity.resolve import Applied, Policy
from receiver.ingest.segment import foreign_type_note, readable_message_id, to_draft
from receiver.models import accounts_table
from receiver.rules import engine
from receiver.sealing import secret_of

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
    """What a body's events became. received = stored + duplicates + invalid + rejected +
    deleted."""

    results: list[dict[str, Any]]
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    invalid: int = 0
    deleted: int = 0

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "received": len(self.results),
            "stored": self.stored,
            "duplicates": self.duplicates,
        }
        if self.deleted:
            body["deleted"] = self.deleted
        return {**body, "results": self.results}


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


@dataclass(frozen=True)
class Begun:
    """A body's transaction once begun: its sender, and what was read under the account's
    rules lock (identity/locks.py, order 1)."""

    sender: Sender
    rules_version: int
    used: int  # of the month's limit, when the lock was granted


def begin(session: Session, api_key: str, period_start: date) -> Begun | None:
    """Check the key, take the account's rules lock shared and read the rules version and
    the month's usage under it; None for an unknown or revoked key. On Postgres one statement,
    receiver_begin (sql/store.sql), which ingest/plain.py sends too; on SQLite, whose writers
    take turns, the same reads without a lock."""
    key = parse_credential(api_key, API_KEY_KIND)
    if key is None:
        return None
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        row = DriverCursor(session).execute(BEGIN_SQL, begin_params(key, period_start)).fetchone()
        if row is None:
            return None
        key_id, sealed, plan, limit, version, used, whole_body = row
        sender = Sender(key.account_id, key_id, secret_of(sealed), plan, limit, whole_body)
        return Begun(sender, version, used)
    found = find_sender(session, api_key)
    if found is None:
        return None
    used = store.used_this_period(session, key.account_id, period_start)
    return Begun(found, rules_version(session, key.account_id), used)


BEGIN_SQL = (
    "SELECT key_id, secret, plan, signal_limit, rules_version, used, whole_body_signatures"
    " FROM receiver_begin("
    "%(account_id)s, %(key_hash)s, %(namespace)s, %(lock_key)s, %(period_start)s)"
)


def begin_params(key: Credential, period_start: date) -> dict[str, Any]:
    return {
        "account_id": key.account_id,
        "key_hash": key.digest,
        "namespace": LOCK_NAMESPACE,
        "lock_key": key.account_id % 2**31,
        "period_start": period_start,
    }


def store_body(
    session: Session,
    begun: Begun,
    prepared: Prepared,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    first_attempt: bool = False,
) -> Outcome:
    """Store every new signal of the body that fits in the month's limit, with its identity
    effects. A body that may not all fit is settled here too: its work is undone to a
    savepoint and redone for the events up to the last new one that fits, with the counter
    locked, so what is left of the limit cannot shrink meanwhile. first_attempt: the body's
    transaction has not started over yet, so it may take its locks the optimistic way
    (resolve.lock_then_read)."""
    sender = begun.sender
    account_id = sender.account_id
    drafts, held = map_and_lock(
        session, account_id, begun.rules_version, prepared.drafts, policy, first_attempt
    )
    period_start, _ = store.period_of(now)
    if begun.used + len(drafts) <= sender.signal_limit:
        # It fits as the counter stood: no savepoint. Should others have claimed the rest
        # meanwhile, the transaction starts over, and then takes the savepoint.
        applied = resolve.apply(session, account_id, drafts, now, policy, held)
        if not _settle(session, sender, applied, period_start, now):
            raise OverTaken()
        applied.deferred.flush(session, account_id)
        return outcome_of(prepared, applied, len(drafts))
    attempt = session.begin_nested()
    applied = resolve.apply(session, account_id, drafts, now, policy, held)
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
        applied = resolve.apply(session, account_id, drafts[:accepted], now, policy, held)
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


class OverTaken(StartOver):
    """The month's limit was claimed by others between the read and the claim."""


def map_and_lock(
    session: Session,
    account_id: int,
    version: int,
    drafts: list[Draft],
    policy: Policy = DEFAULT_POLICY,
    optimistic: bool = False,
) -> tuple[list[Draft], resolve.Held]:
    """Map the drafts with the rules of the version read under the rules lock (a rule change
    takes it exclusive, so no event is matched against rules older than a finished
    backfill); then take the identity locks the mapped drafts need, the optimistic way
    (resolve.lock_then_read) where asked and the store has such locks."""
    rules = engine.active_rules(session, account_id, version)
    if rules:
        drafts = mapped(rules, drafts)
    if optimistic and session.get_bind().dialect.name == "postgresql":
        return drafts, resolve.lock_then_read(session, account_id, drafts, policy)
    return drafts, resolve.lock_identities(session, account_id, drafts)


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
            outcome.invalid += 1
            continue
        result: dict[str, Any] = {"status": "duplicate", "messageId": item.message_id}
        if (note := foreign_type_note(item.payload)) is not None and item.source == "webhook":
            result["note"] = note
        if position >= accepted:
            result["status"] = "rejected"
            outcome.rejected += 1
        elif item.content_hash in applied.deleted:
            # Carried out; the request itself is not kept (it would keep the identifiers it
            # deleted), so it is no stored event.
            result["status"] = "deleted"
            outcome.deleted += 1
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
