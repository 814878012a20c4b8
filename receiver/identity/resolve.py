"""Placing signals: onto a lead, into cold storage, or neither; and the effects of identity
events (identify, alias, group, delete) on the graph and on leads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from receiver.config import Settings
from receiver.identity import graph, leads, locks
from receiver.identity.deferred import Deferred
from receiver.identity.identifiers import normalise_email, traits_of, usable
from receiver.ingest import store
from receiver.ingest.segment import Draft

IDENTITY_TYPES = frozenset({"identify", "alias", "group", "delete"})
LEAD_TRAITS = frozenset({"email", "name", "first_name", "last_name", "company", "title"})


@dataclass
class Applied:
    """What storing a body did: new signals by content hash, those left cold, deletions."""

    inserted: dict[bytes, int] = field(default_factory=dict)
    cold: set[bytes] = field(default_factory=set)
    deleted: set[bytes] = field(default_factory=set)
    blocked: list[graph.Key] = field(default_factory=list)
    deferred: Deferred = field(default_factory=Deferred)


@dataclass(frozen=True)
class Policy:
    max_leads_per_identifier: int = 5
    rehydrate_timeout_ms: int = 20_000


def identity_policy(settings: Settings) -> Policy:
    return Policy(settings.max_leads_per_identifier, settings.rehydrate_timeout_ms)


def changes_identity(draft: Draft) -> bool:
    """Identify, alias, group and delete change identities; so does an event that a mapping
    rule gives an email or other lead fields."""
    if draft.match is not None and lead_traits(draft.match.fields):
        return True
    return draft.source == "segment" and draft.event_type in IDENTITY_TYPES


def lead_traits(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if name in LEAD_TRAITS}


def store_run(
    session: Session, account_id: int, drafts: Sequence[Draft], now: datetime, applied: Applied
) -> None:
    """Insert events that change no identity, each placed by the graph as it stands."""
    if not drafts:
        return
    known = graph.lookup(session, account_id, (k for d in drafts for k in graph.keys_of(d)))
    placements = [place(draft, known) for draft in drafts]
    inserted = store.insert_signals(session, account_id, drafts, placements, now)
    for draft, placement in zip(drafts, placements, strict=True):
        if draft.content_hash not in inserted or draft.content_hash in applied.inserted:
            continue  # a duplicate, or the second copy of one event in this body
        applied.inserted[draft.content_hash] = inserted[draft.content_hash]
        if placement.is_cold:
            applied.cold.add(draft.content_hash)
        if placement.lead_id is not None:
            applied.deferred.widen(placement.lead_id, draft.occurred_at, draft.occurred_at)
        if draft.match is None:
            applied.deferred.queued.append(draft)


def place(draft: Draft, known: dict[graph.Key, graph.Known]) -> store.Placement:
    keys = graph.linkable(graph.keys_of(draft), known)
    lead_id = graph.lead_of(keys, known)
    return store.Placement(lead_id=lead_id, is_cold=lead_id is None and bool(keys))


def apply_identity_event(
    session: Session, account_id: int, draft: Draft, now: datetime, policy: Policy, applied: Applied
) -> None:
    if draft.event_type == "delete" and draft.source == "segment":
        forget_person(session, account_id, draft, applied.deferred)
        applied.deleted.add(draft.content_hash)
        return
    if draft.content_hash in applied.inserted:
        return  # a second copy in the same body
    store_run(session, account_id, [draft], now, applied)
    if draft.content_hash not in applied.inserted:
        return  # a redelivery: its effects were applied with the first delivery
    cause_id = applied.inserted[draft.content_hash]
    if draft.event_type == "group" and draft.source == "segment":
        _record_group(session, account_id, draft, now, applied.deferred)
    keys = graph.keys_of(draft)
    if draft.event_type == "alias" and draft.source == "segment":
        keys += _previous_id_keys(draft)
    traits = _traits(draft)
    if draft.event_type == "group" and not traits:
        return  # a group call links nobody; its company is recorded above
    resolve(session, account_id, draft, keys, traits, cause_id, now, policy, applied)


def resolve(
    session: Session,
    account_id: int,
    draft: Draft,
    keys: list[graph.Key],
    traits: dict[str, Any],
    cause_id: int,
    now: datetime,
    policy: Policy,
    applied: Applied,
) -> None:
    """Link the identifiers (to the lead of the traits' email, if any), enrich the lead with
    the traits, and rehydrate the cluster's cold signals onto it."""
    email = normalise_email(traits.get("email"))
    lead_id = None
    if email is not None:
        lead_id = leads.lead_for_email(session, account_id, email, draft.occurred_at, now)
    linked = graph.link(
        session, account_id, keys, lead_id, cause_id, now, policy.max_leads_per_identifier
    )
    if linked is None:
        return
    applied.blocked.extend(linked.blocked)
    if linked.lead_id is None:
        return
    if traits:
        applied.deferred.enrich(session, account_id, linked.lead_id, traits, draft.occurred_at)
    graph.rehydrate(
        session,
        account_id,
        linked.cluster_id,
        linked.lead_id,
        cause_id,
        now,
        policy.rehydrate_timeout_ms,
    )
    store.attach(session, account_id, cause_id, linked.lead_id, now)
    applied.cold.discard(draft.content_hash)
    span = leads.span_of_lead(session, account_id, linked.lead_id)
    if span is not None:
        applied.deferred.widen(linked.lead_id, *span)


def _previous_id_keys(draft: Draft) -> list[graph.Key]:
    """alias(previousId -> userId): previousId may have been an anonymousId or a userId, and
    cold signals may carry it as either, so it links as both."""
    previous = draft.payload.get("previousId", draft.payload.get("previous_id"))
    if not isinstance(previous, str | int) or usable(str(previous)) is None:
        return []
    return [(graph.USER, str(previous)), (graph.ANONYMOUS, str(previous))]


def _record_group(
    session: Session, account_id: int, draft: Draft, now: datetime, deferred: Deferred
) -> None:
    group_id = _group_id(draft)
    if group_id is None:
        return
    traits = draft.payload.get("traits") or {}
    name = leads.record_company(session, account_id, group_id, traits, now)
    keys = graph.keys_of(draft)
    lead_id = graph.lead_of(keys, graph.lookup(session, account_id, keys))
    if lead_id is not None:
        deferred.record_group(lead_id, group_id, name)


def _group_id(draft: Draft) -> str | None:
    group_id = draft.payload.get("groupId", draft.payload.get("group_id"))
    if not isinstance(group_id, str | int):
        return None
    return usable(str(group_id))


def forget_person(session: Session, account_id: int, draft: Draft, deferred: Deferred) -> None:
    """Segment's user-deletion request: the lead of that userId, its identities, its signals
    and the cold signals of its identifiers are deleted."""
    user_id = usable(draft.user_id)
    if user_id is None:
        return
    known = graph.lookup(session, account_id, [(graph.USER, user_id)]).get((graph.USER, user_id))
    keys: list[graph.Key] = [(graph.USER, user_id)]
    lead_id = None
    if known is not None:
        keys = graph.cluster_keys(session, account_id, known.cluster_id) or keys
        lead_id = known.lead_id
    users = [value for kind, value in keys if kind == graph.USER]
    anonymous = [value for kind, value in keys if kind == graph.ANONYMOUS]
    deleted = leads.forget(session, account_id, lead_id, users, anonymous)
    deferred.dequeued.update(deleted)
    if lead_id is not None:
        deferred.deleted_leads.add(lead_id)
    if known is not None:
        graph.forget_cluster(session, account_id, known.cluster_id)


def lock_identities(session: Session, account_id: int, drafts: Sequence[Draft]) -> None:
    """Take the identity locks a body's drafts need (locks.py, orders 2 and 3): shared on the
    identifiers plain events are placed by; exclusive on everything identity events may
    change: their identifiers, emails and leads, and every identifier of their clusters."""
    changing = [d for d in drafts if changes_identity(d)]
    shared = {
        locks.identity_key(account_id, kind, value)
        for d in drafts
        if not changes_identity(d)
        for kind, value in graph.keys_of(d)
    }
    if not changing:
        locks.lock_identities(session, (), shared)
        return
    # Read before locking, to take most of the closure in key order; read again under the
    # locks, since a cluster may have grown in between.
    wanted = _reach(session, account_id, changing)
    locks.lock_identities(session, wanted, shared - wanted)
    locks.lock_closure(session, _reach(session, account_id, changing), set(wanted))


def _reach(session: Session, account_id: int, drafts: Sequence[Draft]) -> set[int]:
    """The lock keys of everything the identity events may change, as the graph stands."""
    keys: set[graph.Key] = set()
    emails: set[str] = set()
    for draft in drafts:
        keys.update(graph.keys_of(draft))
        if draft.event_type == "alias" and draft.source == "segment":
            keys.update(_previous_id_keys(draft))
        email = normalise_email(_traits(draft).get("email"))
        if email is not None:
            emails.add(email)
    members, lead_ids = graph.reach(session, account_id, keys, emails)
    return {
        *(locks.identity_key(account_id, kind, value) for kind, value in keys | members),
        *(locks.identity_key(account_id, locks.EMAIL, email) for email in emails),
        *(locks.identity_key(account_id, locks.LEAD, lead_id) for lead_id in lead_ids),
    }


def _traits(draft: Draft) -> dict[str, Any]:
    """What an identity event tells of its lead: an identify's traits, and the lead fields a
    mapping rule extracted."""
    traits = traits_of(draft.payload) if draft.event_type == "identify" else {}
    if draft.match is not None:
        traits = {**traits, **lead_traits(draft.match.fields)}
    return traits
