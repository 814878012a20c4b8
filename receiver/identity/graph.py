"""The identity graph: identifiers, the clusters they form, and the lead a cluster resolves to.

Everything here runs inside the caller's transaction, under the account's identity lock (see
locks.py), so reads of the graph stay true until commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from receiver import metrics
from receiver.identity.identifiers import usable
from receiver.ingest.segment import Draft
from receiver.models import clusters_table, identities_table, signals_table

ANONYMOUS = "anonymous_id"
USER = "user_id"
Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Known:
    cluster_id: int
    lead_id: int | None
    blocked: bool
    lead_history: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Linked:
    cluster_id: int
    lead_id: int | None
    blocked: tuple[Key, ...] = ()


def keys_of(draft: Draft) -> list[Key]:
    """The draft's identifiers that can tell one visitor from another, userId first."""
    keys = []
    if (user := usable(draft.user_id)) is not None:
        keys.append((USER, user))
    if (anonymous := usable(draft.anonymous_id)) is not None:
        keys.append((ANONYMOUS, anonymous))
    return keys


def lookup(session: Session, account_id: int, keys: Iterable[Key]) -> dict[Key, Known]:
    by_kind: dict[str, set[str]] = {ANONYMOUS: set(), USER: set()}
    for kind, value in keys:
        by_kind[kind].add(value)
    if not any(by_kind.values()):
        return {}
    rows = session.connection().execute(
        _LOOKUP,
        {
            "account_id": account_id,
            "anonymous": sorted(by_kind[ANONYMOUS]),
            "users": sorted(by_kind[USER]),
        },
    )
    return {
        (r.kind, r.value): known_of(r.cluster_id, r.lead_id, r.blocked_at, r.lead_history)
        for r in rows
    }


def known_of(
    cluster_id: int, lead_id: int | None, blocked_at: datetime | None, lead_history: Sequence[int]
) -> Known:
    """What the graph knows of an identifier, from its identities row and its cluster's lead."""
    return Known(cluster_id, lead_id, blocked_at is not None, tuple(lead_history))


def _lookup_statement() -> sa.Select:
    i, c = identities_table.c, clusters_table.c
    return (
        sa.select(i.kind, i.value, i.cluster_id, c.lead_id, i.blocked_at, i.lead_history)
        .join(clusters_table, sa.and_(c.account_id == i.account_id, c.id == i.cluster_id))
        .where(
            i.account_id == sa.bindparam("account_id"),
            sa.or_(
                sa.and_(
                    i.kind == ANONYMOUS, i.value.in_(sa.bindparam("anonymous", expanding=True))
                ),
                sa.and_(i.kind == USER, i.value.in_(sa.bindparam("users", expanding=True))),
            ),
        )
    )


_LOOKUP = _lookup_statement()


def lead_of(keys: Sequence[Key], known: dict[Key, Known]) -> int | None:
    """The lead of the first identifier (userId before anonymousId) that has one."""
    for key in keys:
        entry = known.get(key)
        if entry is not None and not entry.blocked and entry.lead_id is not None:
            return entry.lead_id
    return None


def linkable(keys: Sequence[Key], known: dict[Key, Known]) -> list[Key]:
    return [key for key in keys if not (key in known and known[key].blocked)]


def link(
    session: Session,
    account_id: int,
    keys: Sequence[Key],
    lead_id: int | None,
    cause_id: int,
    now: datetime,
    max_leads: int,
) -> Linked | None:
    """Join keys into one cluster, resolved to lead_id if given (else to the lead one of them
    already has). A key already on another lead moves alone (a shared device keeps its past
    with the earlier lead); a key that would reach more than max_leads leads is blocked."""
    known = lookup(session, account_id, keys)
    keys = linkable(keys, known)
    if not keys and lead_id is None:
        return None
    lead_id = lead_id if lead_id is not None else lead_of(keys, known)
    target = _target_cluster(session, account_id, keys, known, lead_id, now)
    blocked = []
    for key in keys:
        entry = known.get(key)
        if entry is None:
            _insert_identity(session, account_id, key, target, lead_id, cause_id, now)
        elif entry.cluster_id == target:
            continue
        elif entry.lead_id is None:
            _merge_cluster(session, account_id, entry.cluster_id, target, lead_id, now)
        elif not _move_identity(
            session, account_id, key, entry, target, lead_id, cause_id, now, max_leads
        ):
            blocked.append(key)
    return Linked(target, lead_id, tuple(blocked))


def _target_cluster(
    session: Session,
    account_id: int,
    keys: Sequence[Key],
    known: dict[Key, Known],
    lead_id: int | None,
    now: datetime,
) -> int:
    if lead_id is not None:
        return cluster_of_lead(session, account_id, lead_id, now)
    for key in keys:
        if key in known:
            return known[key].cluster_id
    return _new_cluster(session, account_id, None, now)


def cluster_of_lead(session: Session, account_id: int, lead_id: int, now: datetime) -> int:
    c = clusters_table.c
    found = session.execute(
        sa.select(c.id).where(c.account_id == account_id, c.lead_id == lead_id)
    ).scalar()
    return found if found is not None else _new_cluster(session, account_id, lead_id, now)


def _new_cluster(session: Session, account_id: int, lead_id: int | None, now: datetime) -> int:
    return session.execute(
        sa.insert(clusters_table)
        .values(account_id=account_id, lead_id=lead_id, created_at=now)
        .returning(clusters_table.c.id)
    ).scalar_one()


def _insert_identity(
    session: Session,
    account_id: int,
    key: Key,
    cluster_id: int,
    lead_id: int | None,
    cause_id: int,
    now: datetime,
) -> None:
    session.execute(
        sa.insert(identities_table).values(
            account_id=account_id,
            kind=key[0],
            value=key[1],
            cluster_id=cluster_id,
            lead_history=[lead_id] if lead_id is not None else [],
            linked_by_signal_id=cause_id,
            created_at=now,
            updated_at=now,
        )
    )


def _merge_cluster(
    session: Session, account_id: int, source: int, target: int, lead_id: int | None, now: datetime
) -> None:
    """Move every identifier of a cluster without a lead into target."""
    i, c = identities_table.c, clusters_table.c
    values: dict[str, object] = {"cluster_id": target, "updated_at": now}
    if lead_id is not None:
        # Identifiers of a cluster without a lead were never on one: this is their first.
        values["lead_history"] = [lead_id]
    session.execute(
        sa.update(identities_table)
        .values(**values)
        .where(i.account_id == account_id, i.cluster_id == source)
    )
    session.execute(sa.delete(clusters_table).where(c.account_id == account_id, c.id == source))


def _move_identity(
    session: Session,
    account_id: int,
    key: Key,
    entry: Known,
    target: int,
    lead_id: int | None,
    cause_id: int,
    now: datetime,
    max_leads: int,
) -> bool:
    history = list(entry.lead_history)
    if lead_id is not None and lead_id not in history:
        history.append(lead_id)
    i = identities_table.c
    where = (i.account_id == account_id, i.kind == key[0], i.value == key[1])
    if len(history) > max_leads:
        session.execute(
            sa.update(identities_table)
            .where(*where)
            .values(blocked_at=now, lead_history=history, updated_at=now)
        )
        return False
    session.execute(
        sa.update(identities_table)
        .where(*where)
        .values(
            cluster_id=target, lead_history=history, linked_by_signal_id=cause_id, updated_at=now
        )
    )
    return True


def cluster_keys(session: Session, account_id: int, cluster_id: int) -> list[Key]:
    i = identities_table.c
    rows = session.execute(
        sa.select(i.kind, i.value).where(i.account_id == account_id, i.cluster_id == cluster_id)
    )
    return [(row.kind, row.value) for row in rows]


def rehydrate(
    session: Session,
    account_id: int,
    cluster_id: int,
    lead_id: int,
    cause_id: int,
    now: datetime,
    timeout_ms: int,
) -> int:
    """Move every cold signal of every identifier of the cluster onto the lead: one statement,
    whatever their number. Returns how many moved.

    The identifiers go in as lists, so that the planner combines the two partial indexes of
    cold signals instead of reading all of the account's cold storage. A visitor with a very
    long anonymous history may take longer than the usual statement timeout: this statement
    gets timeout_ms."""
    i = identities_table.c
    keys = (
        session.connection()
        .execute(
            sa.select(i.kind, i.value).where(
                i.account_id == account_id, i.cluster_id == cluster_id, i.blocked_at.is_(None)
            )
        )
        .all()
    )
    params = {
        "account": account_id,
        "lead": lead_id,
        "cause": cause_id,
        "now": now,
        "anonymous": [value for kind, value in keys if kind == ANONYMOUS],
        "users": [value for kind, value in keys if kind == USER],
    }
    with statement_timeout(session, timeout_ms):
        moved = session.connection().execute(_REHYDRATE, params).rowcount
    metrics.REHYDRATED.inc(moved)
    return moved


def _rehydrate_statement() -> sa.Update:
    s = signals_table.c
    return (
        sa.update(signals_table)
        .where(
            s.account_id == sa.bindparam("account"),
            s.is_cold,
            sa.or_(
                s.anonymous_id.in_(sa.bindparam("anonymous", expanding=True)),
                s.user_id.in_(sa.bindparam("users", expanding=True)),
            ),
        )
        .values(
            lead_id=sa.bindparam("lead"),
            is_cold=False,
            linked_by_signal_id=sa.bindparam("cause"),
            linked_at=sa.bindparam("now"),
        )
    )


_REHYDRATE = _rehydrate_statement()


@contextmanager
def statement_timeout(session: Session, timeout_ms: int) -> Iterator[None]:
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    connection = session.connection()
    connection.execute(
        sa.text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(timeout_ms)}
    )
    yield
    connection.execute(sa.text("RESET statement_timeout"))  # back to the connection's own


def forget_cluster(session: Session, account_id: int, cluster_id: int) -> None:
    i, c = identities_table.c, clusters_table.c
    session.execute(
        sa.delete(identities_table).where(i.account_id == account_id, i.cluster_id == cluster_id)
    )
    session.execute(sa.delete(clusters_table).where(c.account_id == account_id, c.id == cluster_id))
