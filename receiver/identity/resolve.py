"""A body's events placed and their identity effects applied: onto a lead, into cold
storage, or neither; and what identify, alias, group, delete and rules with lead fields do to
the graph and to leads (CONTRACT section 2), set-based.

For each run of events between deletions: the graph they reach is loaded, every event is
inserted placed by it, the run is replayed in memory in body order (replay.py), and what that
changed is written back. Statements do not grow with the number of identifies in a body, only
with its deletions (rare, and each a different person's).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from receiver import statements, store
from receiver.config import Settings
from receiver.events import Draft, Placement
from receiver.identity import graph, leads, locks
from receiver.identity.deferred import Deferred
from receiver.identity.identifiers import normalise_email, traits_of, usable
from receiver.identity.replay import BodySignal, Graph, Key, move_cold_signals
from receiver.models import signals_table

IDENTITY_TYPES = frozenset({"identify", "alias", "group", "delete"})
LEAD_TRAITS = frozenset({"email", "name", "first_name", "last_name", "company", "title"})


@dataclass
class Applied:
    """What storing a body did: new signals by content hash, where they went, those left
    cold, deletions, and the writes held back until the usage counter is claimed."""

    inserted: dict[bytes, int] = field(default_factory=dict)
    new: list[store.NewSignal] = field(default_factory=list)
    spans: dict[int, tuple[datetime, datetime]] = field(default_factory=dict)
    cold: set[bytes] = field(default_factory=set)
    deleted: set[bytes] = field(default_factory=set)
    blocked: list[Key] = field(default_factory=list)
    deferred: Deferred = field(default_factory=Deferred)


@dataclass
class RunReads:
    """What a run of events with identity events is resolved from, read in one round trip:
    the graph it reaches and the leads of its emails, which of its identity events are
    stored already, and ids for its signals."""

    graph: Graph
    by_email: dict[str, int]
    stored: set[bytes]
    ids: list[int]


@dataclass
class Held:
    """The identity locks a body's transaction holds: the keys it holds exclusive, and what
    its body's run reads when that was read under every lock it needs (lock_then_read), for
    the run to take instead of reading it again."""

    exclusive: set[int] = field(default_factory=set)
    reads: RunReads | None = None
    # Ids lock_then_read took for the run when its read was not final: the read under the
    # locks uses them.
    ids: list[int] = field(default_factory=list)


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


def _is(draft: Draft, kind: str) -> bool:
    return draft.source == "segment" and draft.event_type == kind


def apply(
    session: Session,
    account_id: int,
    drafts: Sequence[Draft],
    now: datetime,
    policy: Policy,
    held: Held,
) -> Applied:
    """Store the drafts in body order, with their identity effects; the caller settles.
    held: the identity locks lock_identities or lock_then_read took."""
    applied = Applied()
    run: list[Draft] = []
    for draft in drafts:
        if _is(draft, "delete"):
            _apply_run(session, account_id, run, now, policy, applied, held)
            run = []
            forget_person(session, account_id, draft, applied.deferred)
            applied.deleted.add(draft.content_hash)
        else:
            run.append(draft)
    _apply_run(session, account_id, run, now, policy, applied, held)
    if applied.cold and applied.deleted:
        # A later run may have rehydrated signals that an earlier one left cold (within a
        # run, replay placed every signal where it ends).
        applied.cold = store.still_cold(session, account_id, applied.cold)
    return applied


def apply_stored(
    session: Session,
    account_id: int,
    mapped: Sequence[tuple[int, Draft]],
    now: datetime,
    policy: Policy,
    held: Held,
) -> Applied:
    """The identity effects of stored signals that a rule now maps (a backfill), as on
    arrival; the caller holds their identity locks (held, as lock_identities returned them)
    and writes applied.spans and deferred."""
    applied = Applied()
    changing = [(signal_id, d) for signal_id, d in mapped if changes_identity(d)]
    if not changing:
        return applied
    drafts = [d for _, d in changing]
    reads = _load_locked(session, account_id, drafts, policy, held, new_ids=0)
    body_graph, by_email = reads.graph, reads.by_email
    body = []
    for signal_id, d in changing:
        keys = graph.keys_of(d)
        body.append((d, BodySignal(keys, body_graph.place(keys), d.occurred_at), signal_id))
    placed_by_graph = [signal.placement for _, signal, _ in body]
    _resolve(session, account_id, body_graph, by_email, body, now, policy, applied)
    store.replace_placements(
        session,
        account_id,
        [
            (signal_id, signal.placement)
            for (_, signal, signal_id), before in zip(body, placed_by_graph, strict=True)
            if signal.placement != before
        ],
        now,
    )
    for draft, signal, _ in body:
        if signal.placement.lead_id is not None:
            store.widen(
                applied.spans, signal.placement.lead_id, draft.occurred_at, draft.occurred_at
            )
    return applied


def _apply_run(
    session: Session,
    account_id: int,
    drafts: Sequence[Draft],
    now: datetime,
    policy: Policy,
    applied: Applied,
    held: Held,
) -> None:
    if not drafts:
        return
    changing = any(changes_identity(d) for d in drafts)
    keys = [graph.keys_of(d) for d in drafts]
    if not changing:
        body_graph, _ = graph.load(
            session, account_id, (), (), 0, placed=(k for ks in keys for k in ks)
        )
        placements = [body_graph.place(k) for k in keys]
        inserted = store.insert_signals(session, account_id, drafts, placements, now)
        for draft, placement in zip(drafts, placements, strict=True):
            _record_new(applied, inserted, draft, placement)
        return
    # Identity events already stored had their effects with their first delivery: only new
    # ones are replayed. Ids are taken first, so that replay links each signal it moves to
    # the event that moved it, and every row is inserted once, where replay put it.
    reads = _load_locked(session, account_id, drafts, policy, held, new_ids=len(drafts))
    body_graph, by_email, stored, ids = reads.graph, reads.by_email, reads.stored, reads.ids
    body: list[tuple[Draft, BodySignal, int]] = []
    seen = set(stored) | set(applied.inserted)  # and the first copy of each event of this body
    for draft, draft_keys, signal_id in zip(drafts, keys, ids, strict=True):
        if draft.content_hash not in seen:
            seen.add(draft.content_hash)
            signal = BodySignal(draft_keys, body_graph.place(draft_keys), draft.occurred_at)
            body.append((draft, signal, signal_id))
    _resolve(session, account_id, body_graph, by_email, body, now, policy, applied)
    inserted = store.insert_signals(
        session,
        account_id,
        [draft for draft, _, _ in body],
        [signal.placement for _, signal, _ in body],
        now,
        [signal_id for _, _, signal_id in body],
    )
    for draft, signal, _ in body:
        _record_new(applied, inserted, draft, signal.placement)


def _record_new(
    applied: Applied, inserted: dict[bytes, int], draft: Draft, placement: Placement
) -> None:
    """A new signal of the body (its first copy), where it went."""
    digest = draft.content_hash
    if digest not in inserted or digest in applied.inserted:
        return  # a duplicate, or the second copy of one event in this body
    applied.inserted[digest] = inserted[digest]
    applied.new.append(store.NewSignal(inserted[digest], placement.lead_id, draft))
    if placement.is_cold:
        applied.cold.add(digest)


def _resolve(
    session: Session,
    account_id: int,
    body_graph: Graph,
    by_email: dict[str, int],
    body: list[tuple[Draft, BodySignal, int]],
    now: datetime,
    policy: Policy,
    applied: Applied,
) -> None:
    """Replay the new events in memory, then write what changed: leads of new emails first
    (replay links to them), then the graph and the stored cold signals moved. The body's own
    signals are left placed in body, for the caller to insert or move."""
    first_seen: dict[str, datetime] = {}
    for draft, _, _ in body:
        email = _email(draft) if changes_identity(draft) else None
        if email is not None and email not in by_email:
            first_seen.setdefault(email, draft.occurred_at)
    found, created = leads.create_for_emails(session, account_id, first_seen, now)
    by_email.update(found)
    applied.deferred.created |= created
    companies = _replay(body_graph, by_email, body, applied.deferred)
    leads.record_companies(session, account_id, companies, now)
    graph.write(session, account_id, body_graph, now)
    moved = graph.rehydrate_stored(
        session,
        account_id,
        body_graph.rehydrations,
        [signal_id for _, _, signal_id in body],
        now,
        policy.rehydrate_timeout_ms,
    )
    for lead_id, (earliest, latest) in moved.items():
        store.widen(applied.spans, lead_id, earliest, latest)
    applied.blocked.extend(body_graph.blocked)


def _replay(
    body_graph: Graph,
    by_email: dict[str, int],
    body: Sequence[tuple[Draft, BodySignal, int]],
    deferred: Deferred,
) -> dict[str, dict[str, Any]]:
    """Each event in body order, as if each had come alone: a plain event is placed by the
    graph as the events before it left it; an identity event links, enriches and rehydrates.
    Returns the traits of each group (company) the body names, the last call's winning."""
    companies: dict[str, dict[str, Any]] = {}
    cold: list[BodySignal] = []  # the body's signals so far that are cold
    for draft, signal, signal_id in body:
        signal.placement = body_graph.place(signal.keys)
        if signal.placement.is_cold:
            cold.append(signal)
        if not changes_identity(draft):
            continue
        if _is(draft, "group") and (group_id := _group_id(draft)) is not None:
            group_traits = draft.payload.get("traits") or {}
            companies[group_id] = group_traits
            lead_id = body_graph.lead_of(signal.keys)
            if lead_id is not None:
                name = group_traits.get("name")
                deferred.record_group(lead_id, group_id, name if isinstance(name, str) else None)
        traits = _traits(draft)
        if _is(draft, "group") and not traits:
            continue  # a group call links nobody; its company is recorded above
        email = normalise_email(traits.get("email"))
        if email is not None and links_nothing(draft, body_graph, by_email):
            # A returning visitor's: its identifiers are on its lead's cluster, and none of
            # them has a cold signal left, in the store or in the body, since an identifier
            # joins a lead's cluster only by a link whose rehydration moved them all.
            deferred.enrich(by_email[email], traits, draft.occurred_at)
            continue
        linked = body_graph.link(_keys(draft), by_email.get(email) if email else None, signal_id)
        if linked is None:
            continue
        cluster, lead_id = linked
        if lead_id is None:
            continue
        if traits:
            deferred.enrich(lead_id, traits, draft.occurred_at)
        move_cold_signals(cold, body_graph.rehydrate(cluster, lead_id, signal_id))
        cold = [s for s in cold if s.placement.is_cold]
        if signal.placement.lead_id != lead_id:
            # The event that resolved the lead is on it, whatever identifiers it had.
            signal.placement = Placement(lead_id, False, signal_id)
    return companies


def _keys(draft: Draft) -> tuple[Key, ...]:
    """The identifiers an event links: its own, and an alias's previousId."""
    keys = graph.keys_of(draft)
    if _is(draft, "alias"):
        keys += _previous_id_keys(draft)
    return keys


def _previous_id_keys(draft: Draft) -> tuple[Key, ...]:
    """alias(previousId -> userId): previousId may have been an anonymousId or a userId, and
    cold signals may carry it as either, so it links as both."""
    previous = draft.payload.get("previousId", draft.payload.get("previous_id"))
    if not isinstance(previous, str | int) or usable(str(previous)) is None:
        return ()
    return ((graph.USER, str(previous)), (graph.ANONYMOUS, str(previous)))


def _group_id(draft: Draft) -> str | None:
    group_id = draft.payload.get("groupId", draft.payload.get("group_id"))
    if not isinstance(group_id, str | int):
        return None
    return usable(str(group_id))


def _traits(draft: Draft) -> dict[str, Any]:
    """What an identity event tells of its lead: an identify's traits, and the lead fields a
    mapping rule extracted."""
    traits = traits_of(draft.payload) if _is(draft, "identify") else {}
    if draft.match is not None:
        traits = {**traits, **lead_traits(draft.match.fields)}
    return traits


def _email(draft: Draft) -> str | None:
    return normalise_email(_traits(draft).get("email"))


def forget_person(session: Session, account_id: int, draft: Draft, deferred: Deferred) -> None:
    """Segment's user-deletion request: the lead of that userId, its identities, its signals
    and the cold signals of its identifiers are deleted."""
    user_id = usable(draft.user_id)
    if user_id is None:
        return
    found = graph.lookup(session, account_id, [(graph.USER, user_id)])
    known = found.known((graph.USER, user_id))
    keys: list[Key] = [(graph.USER, user_id)]
    lead_id = None
    if known is not None:
        keys = graph.cluster_keys(session, account_id, known.cluster) or keys
        lead_id = found.lead_of_cluster(known.cluster)
    users = [value for kind, value in keys if kind == graph.USER]
    anonymous = [value for kind, value in keys if kind == graph.ANONYMOUS]
    deleted = leads.forget(session, account_id, lead_id, users, anonymous)
    deferred.dequeued.update(deleted)
    if lead_id is not None:
        deferred.deleted_leads.add(lead_id)
    if known is not None:
        graph.forget_cluster(session, account_id, known.cluster)


def lock_identities(session: Session, account_id: int, drafts: Sequence[Draft]) -> Held:
    """Take the identity locks a body's drafts need (locks.py, order 2): exclusive on
    everything the identity events that change the graph may change (_keys_to_lock), as read
    just before; shared on every other identifier of the body, which events are placed by.
    The graph is read again under them (order 3, _load_locked), since it may have changed in
    between."""
    shared = _identity_keys(account_id, drafts)
    changing = [d for d in drafts if changes_identity(d)]
    if not changing:
        locks.lock_identities(session, (), shared)
        return Held()
    read = _read_run(session, account_id, changing, 0, new_ids=0)
    wanted = _keys_to_lock(account_id, changing, read.graph, read.by_email)
    locks.lock_identities(session, wanted, shared - wanted)
    return Held(wanted)


def _identity_keys(account_id: int, drafts: Sequence[Draft]) -> set[int]:
    """The lock key of every identifier of the drafts."""
    return {locks.identity_key(account_id, kind, value) for d in drafts for kind, value in _keys(d)}


def lock_then_read(
    session: Session, account_id: int, drafts: Sequence[Draft], policy: Policy
) -> Held:
    """lock_identities in fewer round trips, for a body's first attempt: every identifier of
    the body and every email its identity events name locked shared, and the graph read
    under those locks in the same round trip. Where the identity events change nothing (a
    returning visitor's identifies: `links_nothing`), that read is final. Otherwise what they
    change is locked exclusive without waiting, since this transaction already holds shared
    locks another may be waiting to upgrade (LockConflict: the next attempt takes
    lock_identities' way). The read is final then too if it reached no further than the
    keys it was read under; else the graph is read again under the exclusive locks. A body
    with a deletion takes lock_identities' way: each of its runs reads a graph of its own."""
    changing = [d for d in drafts if changes_identity(d)]
    if not changing or any(_is(d, "delete") for d in drafts):
        return lock_identities(session, account_id, drafts)
    shared = _identity_keys(account_id, drafts) | _email_keys(account_id, _emails(changing))
    reads = _read_run(
        session,
        account_id,
        drafts,
        policy.max_leads_per_identifier,
        new_ids=len(drafts),
        first=locks.identity_locks_statement((), shared),
    )
    wanted = _keys_to_lock(account_id, changing, reads.graph, reads.by_email)
    if not wanted:
        return Held(set(), reads)
    held = Held()
    locks.lock_closure(session, wanted, held.exclusive)
    if wanted <= shared:
        # Nothing the read saw could change while its keys were held shared, and they are
        # held exclusive now: the read is final. That is a new visitor's identify with a new
        # email, most visitors' first; one that reached further reads again.
        held.reads = reads
    else:
        held.ids = reads.ids
    return held


def _read_run(
    session: Session,
    account_id: int,
    drafts: Sequence[Draft],
    max_leads: int,
    new_ids: int,
    first: tuple[str, dict[str, Any]] | None = None,
    ids: list[int] | None = None,
) -> RunReads:
    """The graph as far as the identity events' identifiers and emails reach, and the plain
    events' identifiers; and with it, for a run whose signals are to be inserted (new_ids of
    them), which of its identity events are stored and ids for its signals (unless taken
    already: ids). On Postgres in one round trip, after `first` where given."""
    changing = [d for d in drafts if changes_identity(d)]
    wanted = graph.reads(
        account_id,
        (key for d in changing for key in _keys(d)),
        (e for d in changing if (e := _email(d)) is not None),
        placed=(key for d in drafts if not changes_identity(d) for key in _keys(d)),
    )
    postgres = session.get_bind().dialect.name == "postgresql"
    also: graph.Reads = []
    if new_ids:
        also.append((store.stored, store.stored_params(account_id, _identity_hashes(drafts))))
    allocate = new_ids > 0 and ids is None
    if allocate and postgres:
        also.append((store.next_ids, store.next_ids_params(signals_table, new_ids)))
    found = statements.run_together(session, [*wanted, *also], first)
    body_graph, by_email = graph.of_rows(wanted, found, max_leads)
    stored = store.hashes_of(found[len(wanted)]) if new_ids else set()
    if allocate:
        ids = (
            [row.id for row in found[len(wanted) + 1]]
            if postgres
            else store.allocate_ids(session, signals_table, new_ids)
        )
    return RunReads(body_graph, by_email, stored, ids or [])


def _load_locked(
    session: Session,
    account_id: int,
    drafts: Sequence[Draft],
    policy: Policy,
    held: Held,
    new_ids: int,
) -> RunReads:
    """_read_run, under the locks of all it reaches: those not held yet are taken without
    waiting (locks.lock_closure), or the transaction starts over. What lock_then_read read
    under every lock it needs is taken instead, once: replay changes the graph in place."""
    if held.reads is not None:
        reads, held.reads = held.reads, None
        return reads
    taken = held.ids if new_ids and len(held.ids) == new_ids else None
    held.ids = []
    reads = _read_run(
        session, account_id, drafts, policy.max_leads_per_identifier, new_ids, ids=taken
    )
    before = len(held.exclusive)
    wanted = _keys_to_lock(account_id, drafts, reads.graph, reads.by_email)
    locks.lock_closure(session, wanted, held.exclusive)
    if new_ids and len(held.exclusive) > before:
        # The graph changed since the locks were taken: read which events are stored under
        # all of them.
        reads.stored = store.stored_hashes(session, account_id, _identity_hashes(drafts))
    return reads


def _identity_hashes(drafts: Sequence[Draft]) -> list[bytes]:
    """The identity events', whose effects are replayed only if they are not stored yet."""
    return [d.content_hash for d in drafts if changes_identity(d)]


def _keys_to_lock(
    account_id: int, drafts: Sequence[Draft], body_graph: Graph, by_email: dict[str, int]
) -> set[int]:
    """The lock keys of everything the identity events among drafts may change, as the graph
    stands: their identifiers and every identifier of those identifiers' clusters, their
    emails, and the leads of both. A returning visitor's identify changes none of them
    (`links_nothing`): its identifiers are locked shared, as plain events' are."""
    changing = [
        d for d in drafts if changes_identity(d) and not links_nothing(d, body_graph, by_email)
    ]
    keys = {key for d in changing for key in _keys(d)}
    clusters = {entry.cluster for k in keys if (entry := body_graph.known(k)) is not None}
    keys |= {k for k, entry in body_graph.identifiers.items() if entry.cluster in clusters}
    emails = _emails(changing)
    lead_ids = {lead for c in clusters if (lead := body_graph.lead_of_cluster(c)) is not None}
    lead_ids |= {by_email[e] for e in emails if e in by_email}
    return {
        *(locks.identity_key(account_id, kind, value) for kind, value in keys),
        *_email_keys(account_id, emails),
        *(locks.identity_key(account_id, locks.LEAD, lead_id) for lead_id in lead_ids),
    }


def _emails(drafts: Sequence[Draft]) -> set[str]:
    return {e for d in drafts if (e := _email(d)) is not None}


def _email_keys(account_id: int, emails: Iterable[str]) -> set[int]:
    return {locks.identity_key(account_id, locks.EMAIL, email) for email in emails}


def links_nothing(draft: Draft, body_graph: Graph, by_email: dict[str, int]) -> bool:
    """An identify whose email has a lead whose cluster holds each of its identifiers already,
    unblocked: a returning visitor's. Replay links nothing for it (Graph.link finds every key
    in the target cluster), so it changes no identifier, cluster or email, only its lead's
    traits, which Deferred.flush merges under the lead's row lock. While its identifiers are
    locked shared, no other transaction can change them either."""
    if not _is(draft, "identify"):
        return False
    email = _email(draft)
    lead_id = by_email.get(email) if email is not None else None
    cluster = body_graph.lead_clusters.get(lead_id) if lead_id is not None else None
    keys = _keys(draft)
    return (
        cluster is not None
        and bool(keys)
        and all(
            (entry := body_graph.known(key)) is not None
            and entry.cluster == cluster
            and not entry.blocked
            for key in keys
        )
    )
