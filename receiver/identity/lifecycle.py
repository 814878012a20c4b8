"""What an admin does to correct leads (CONTRACT section 6): unlink an identifier, merge two
leads, delete one. Each runs in the caller's transaction, set-based, under the same identity
locks as ingestion (locks.py): the leads, their emails and every identifier of their clusters,
exclusive, so an event of any of them waits, or is waited for, and never sees half of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver import store
from receiver.errors import NotFound, Unprocessable
from receiver.identity import graph, leads, locks
from receiver.identity.enrichment import lead_fields, merge_stamped
from receiver.identity.replay import ANONYMOUS, USER, Key
from receiver.models import (
    clusters_table,
    identities_table,
    lead_emails_table,
    leads_table,
    signals_table,
    unlinks_table,
)


@dataclass(frozen=True)
class LeadRow:
    id: int
    email: str
    emails: tuple[str, ...]  # its own first, then those merged into it
    cluster_id: int | None
    keys: tuple[Key, ...]  # every identifier of its cluster
    row: Any


def unlink(
    session: Session, account_id: int, lead_id: int, kind: str, value: str, now: datetime
) -> dict[str, Any]:
    """Detach one identifier from the lead. Its signals that nothing else ties to the lead go
    back to cold storage under it; it never joins the lead again."""
    (lead,) = _lock_leads(session, account_id, [lead_id], [(kind, value)])
    if (kind, value) not in lead.keys:
        raise NotFound("That identifier is not one of this lead's.")
    cluster_id = store.allocate_ids(session, clusters_table, 1)[0]
    session.execute(
        sa.insert(clusters_table).values(
            account_id=account_id, id=cluster_id, lead_id=None, created_at=now
        )
    )
    i = identities_table.c
    session.execute(
        sa.update(identities_table)
        .where(i.account_id == account_id, i.kind == kind, i.value == value)
        .values(cluster_id=cluster_id, linked_by_signal_id=None, updated_at=now)
    )
    still_linked = [key for key in lead.keys if key != (kind, value)]
    moved = _back_to_cold(session, account_id, lead, (kind, value), still_linked)
    session.execute(
        store.upsert(session, unlinks_table)
        .values(
            account_id=account_id,
            kind=kind,
            value=value,
            lead_id=lead_id,
            unlinked_at=now,
            signals_moved=moved,
        )
        .on_conflict_do_nothing()
    )
    _respan(session, account_id, lead_id)
    return {"lead_id": lead_id, "kind": kind, "value": value, "signals_moved": moved}


def _back_to_cold(
    session: Session, account_id: int, lead: LeadRow, key: Key, still_linked: Sequence[Key]
) -> int:
    """Signals of the lead with key and no identifier still linked to it (its other kind of
    identifier, or one of its emails in the traits or mapped fields) go cold, unlinked."""
    s = signals_table.c
    own, other = (s.anonymous_id, s.user_id) if key[0] == ANONYMOUS else (s.user_id, s.anonymous_id)
    other_kind = USER if key[0] == ANONYMOUS else ANONYMOUS
    linked = [v for k, v in still_linked if k == other_kind]
    emails = [_normalised(s.payload["traits"]["email"]), _normalised(s.mapped_fields["email"])]
    emails.append(_normalised(s.payload["context"]["traits"]["email"]))
    result = session.execute(
        sa.update(signals_table)
        .where(
            s.account_id == account_id,
            s.lead_id == lead.id,
            own == key[1],
            sa.or_(other.is_(None), other.not_in(linked)) if linked else sa.true(),
            *[sa.func.coalesce(email, "").not_in(lead.emails) for email in emails],
        )
        .values(lead_id=None, is_cold=True, linked_by_signal_id=None, linked_at=None)
    )
    return result.rowcount  # type: ignore[attr-defined]  # an UPDATE's CursorResult


def _normalised(value: Any) -> sa.ColumnElement:
    return sa.func.lower(sa.func.trim(value.as_string()))


def merge(session: Session, account_id: int, from_id: int, into_id: int, now: datetime) -> int:
    """Everything of lead from_id onto into_id: identifiers, signals, traits (trait by trait,
    the later event's value winning) and its email, which names into_id from now on; from_id
    is deleted. Returns into_id."""
    if from_id == into_id:
        raise Unprocessable(
            "A lead cannot be merged into itself.", errors={"into": ["Same lead as from."]}
        )
    source, target = _lock_leads(session, account_id, [from_id, into_id], [])
    if source.cluster_id is not None:
        _move_identifiers(session, account_id, source, target, now)
    s, e, u = signals_table.c, lead_emails_table.c, unlinks_table.c
    session.execute(
        sa.update(signals_table)
        .where(s.account_id == account_id, s.lead_id == from_id)
        .values(lead_id=into_id)
    )
    # An admin's merge says the two are one person: what was unlinked from either stays
    # unlinked from the survivor, but for the identifiers the merge itself brings.
    session.execute(
        sa.delete(unlinks_table).where(
            u.account_id == account_id,
            u.lead_id == into_id,
            sa.tuple_(u.kind, u.value).in_(source.keys) if source.keys else sa.false(),
        )
    )
    kept = session.execute(
        sa.select(unlinks_table).where(u.account_id == account_id, u.lead_id == from_id)
    ).mappings()
    for unlinked in kept:
        session.execute(
            store.upsert(session, unlinks_table)
            .values({**unlinked, "lead_id": into_id})
            .on_conflict_do_nothing()
        )
    session.execute(
        sa.update(lead_emails_table)
        .where(e.account_id == account_id, e.lead_id == from_id)
        .values(lead_id=into_id)
    )
    session.execute(
        sa.insert(lead_emails_table).values(
            account_id=account_id, email=source.email, lead_id=into_id, created_at=now
        )
    )
    _merge_fields(session, account_id, source.row, target.row)
    leads.forget(session, account_id, from_id, [], [])
    return into_id


def _move_identifiers(
    session: Session, account_id: int, source: LeadRow, target: LeadRow, now: datetime
) -> None:
    """The source's identifiers join the target's cluster (or its cluster becomes the
    target's, when the target has none), each with the target in its lead history."""
    i, c = identities_table.c, clusters_table.c
    rows = session.execute(
        sa.select(i.kind, i.value, i.lead_history).where(
            i.account_id == account_id, i.cluster_id == source.cluster_id
        )
    ).all()
    if target.cluster_id is None:
        session.execute(
            sa.update(clusters_table)
            .where(c.account_id == account_id, c.id == source.cluster_id)
            .values(lead_id=target.id)
        )
        cluster_id = source.cluster_id
    else:
        cluster_id = target.cluster_id
    if rows:
        session.execute(
            sa.update(identities_table)
            .where(
                i.account_id == account_id,
                i.kind == sa.bindparam("k"),
                i.value == sa.bindparam("v"),
            )
            .values(cluster_id=cluster_id, lead_history=sa.bindparam("h"), updated_at=now),
            [
                {
                    "k": row.kind,
                    "v": row.value,
                    "h": [*row.lead_history, target.id]
                    if target.id not in row.lead_history
                    else row.lead_history,
                }
                for row in sorted(rows)
            ],
        )
    if cluster_id != source.cluster_id:
        session.execute(
            sa.delete(clusters_table).where(c.account_id == account_id, c.id == source.cluster_id)
        )


def _merge_fields(session: Session, account_id: int, source: Any, target: Any) -> None:
    traits, times = merge_stamped(
        dict(target.traits), dict(target.trait_times), source.traits, source.trait_times
    )
    fields = lead_fields(traits)
    if fields["company"] is None:
        fields["company"] = target.company or source.company
    l = leads_table.c  # noqa: E741
    session.execute(
        sa.update(leads_table)
        .where(l.account_id == account_id, l.id == target.id)
        .values(
            traits=traits,
            trait_times=times,
            group_id=target.group_id or source.group_id,
            first_seen_at=min(target.first_seen_at, source.first_seen_at),
            last_seen_at=max(target.last_seen_at, source.last_seen_at),
            **fields,
        )
    )


def delete(session: Session, account_id: int, lead_id: int) -> None:
    """What Segment's `delete` does: the lead, its identifiers and every signal of theirs,
    cold ones included."""
    (lead,) = _lock_leads(session, account_id, [lead_id], [])
    users = [value for kind, value in lead.keys if kind == USER]
    anonymous = [value for kind, value in lead.keys if kind == ANONYMOUS]
    unmapped = leads.forget(session, account_id, lead_id, users, anonymous)
    if lead.cluster_id is not None:
        graph.forget_cluster(session, account_id, lead.cluster_id)
    store.take_out_of_queue(session, account_id, unmapped)


def _lock_leads(
    session: Session, account_id: int, lead_ids: Sequence[int], extra: Sequence[Key]
) -> list[LeadRow]:
    """The leads, in the order asked, under exclusive identity locks on each, its emails and
    every identifier of its cluster (locks.py, orders 2 and 3); NotFound if one is not the
    account's. Read once to know what to lock, then again under the locks."""
    wanted = _lock_keys(account_id, _read_leads(session, account_id, lead_ids), extra)
    locks.lock_identities(session, wanted)
    found = _read_leads(session, account_id, lead_ids)
    locks.lock_closure(session, _lock_keys(account_id, found, extra), wanted)
    return found


def _lock_keys(account_id: int, found: Sequence[LeadRow], extra: Sequence[Key]) -> set[int]:
    key = locks.identity_key
    return {
        *(key(account_id, locks.LEAD, lead.id) for lead in found),
        *(key(account_id, locks.EMAIL, email) for lead in found for email in lead.emails),
        *(key(account_id, kind, value) for lead in found for kind, value in lead.keys),
        *(key(account_id, kind, value) for kind, value in extra),
    }


def _read_leads(session: Session, account_id: int, lead_ids: Sequence[int]) -> list[LeadRow]:
    l, c, e = leads_table.c, clusters_table.c, lead_emails_table.c  # noqa: E741
    rows = {
        row.id: row
        for row in session.execute(
            sa.select(leads_table, c.id.label("cluster_id"))
            .outerjoin(clusters_table, sa.and_(c.account_id == l.account_id, c.lead_id == l.id))
            .where(l.account_id == account_id, l.id.in_(lead_ids))
        )
    }
    merged: dict[int, list[str]] = {}
    for lead_id, email in session.execute(
        sa.select(e.lead_id, e.email)
        .where(e.account_id == account_id, e.lead_id.in_(lead_ids))
        .order_by(e.email)
    ):
        merged.setdefault(lead_id, []).append(email)
    found = []
    for lead_id in lead_ids:
        row = rows.get(lead_id)
        if row is None:
            raise NotFound("No such lead.")
        keys = (
            ()
            if row.cluster_id is None
            else graph.cluster_keys(session, account_id, row.cluster_id)
        )
        emails = (row.email, *merged.get(lead_id, ()))
        found.append(LeadRow(row.id, row.email, emails, row.cluster_id, tuple(keys), row))
    return found


def _respan(session: Session, account_id: int, lead_id: int) -> None:
    """The lead's first and last seen, from the event times of the signals it still has."""
    l, s = leads_table.c, signals_table.c  # noqa: E741
    mine = sa.and_(s.account_id == account_id, s.lead_id == lead_id)
    earliest = sa.select(sa.func.min(s.occurred_at)).where(mine).scalar_subquery()
    latest = sa.select(sa.func.max(s.occurred_at)).where(mine).scalar_subquery()
    session.execute(
        sa.update(leads_table)
        .where(l.account_id == account_id, l.id == lead_id)
        .values(
            first_seen_at=sa.func.coalesce(earliest, l.first_seen_at),
            last_seen_at=sa.func.coalesce(latest, l.last_seen_at),
        )
    )
