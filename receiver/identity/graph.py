"""The identity graph in the store: identifiers, the clusters they form, and the lead a cluster
resolves to. Read for a body (`lookup`, `load`), changed in memory (replay.py), written back
(`write`, `rehydrate_stored`) in a number of statements that does not grow with the body.

Everything here runs inside the caller's transaction, under the body's identity locks (see
locks.py), so reads of the graph stay true until commit.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver import metrics, statements, store
from receiver.db import DriverCursor
from receiver.events import Draft
from receiver.identity import leads
from receiver.identity.identifiers import usable
from receiver.identity.replay import (
    ANONYMOUS,
    USER,
    Graph,
    Identifier,
    Key,
    Rehydration,
)
from receiver.models import (
    clusters_table,
    identities_table,
    signals_table,
    unlinks_table,
)


def keys_of(draft: Draft) -> tuple[Key, ...]:
    """The draft's identifiers that can tell one visitor from another, userId first."""
    return _keys_of(draft.user_id, draft.anonymous_id)


# A body asks for an event's keys several times (locks, reads, placement, replay) and its
# visitors recur: remembered, they cost a dictionary lookup instead of the junk checks.
@functools.lru_cache(maxsize=4096)
def _keys_of(user_id: str | None, anonymous_id: str | None) -> tuple[Key, ...]:
    keys: list[Key] = []
    if (user := usable(user_id)) is not None:
        keys.append((USER, user))
    if (anonymous := usable(anonymous_id)) is not None:
        keys.append((ANONYMOUS, anonymous))
    return tuple(keys)


def by_kind(keys: Iterable[Key]) -> dict[str, list[str]]:
    """The keys' values as the lookups take them: anonymousIds and userIds, sorted."""
    values: dict[str, set[str]] = {ANONYMOUS: set(), USER: set()}
    for kind, value in keys:
        values[kind].add(value)
    return {"anonymous": sorted(values[ANONYMOUS]), "users": sorted(values[USER])}


def load(
    session: Session,
    account_id: int,
    reach: Iterable[Key],
    emails: Iterable[str],
    max_leads: int,
    placed: Iterable[Key] = (),
) -> tuple[Graph, dict[str, int]]:
    """The graph as far as identity events' keys (`reach`) reach: every identifier of their
    clusters, which those events may merge, and the leads of the clusters and of the emails
    (by email); and the identifiers of plain events' keys (`placed`) themselves, with their
    clusters' leads: enough to place the events. Three statements, in one round trip."""
    wanted = reads(account_id, reach, emails, placed)
    return of_rows(wanted, statements.run_together(session, wanted), max_leads)


Reads = list[tuple[Any, dict[str, Any]]]


def reads(
    account_id: int, reach: Iterable[Key], emails: Iterable[str], placed: Iterable[Key] = ()
) -> Reads:
    """load's statements, for a caller that sends them with others (of_rows reads their
    rows)."""
    reached, looked_up = by_kind(reach), by_kind(placed)
    emails = sorted(set(emails))
    wanted: Reads = []
    if reached["anonymous"] or reached["users"]:
        wanted.append((_reach, {"account_id": account_id, **reached}))
    if looked_up["anonymous"] or looked_up["users"]:
        wanted.append((lookup_statement, {"account_id": account_id, **looked_up}))
    if emails:
        wanted.append((leads.by_email_statement, {"account_id": account_id, "emails": emails}))
    return wanted


def of_rows(
    wanted: Reads, found: Sequence[Sequence[Any]], max_leads: int
) -> tuple[Graph, dict[str, int]]:
    """The graph and the leads by email from the rows of reads' statements."""
    graph = Graph({}, {}, {}, max_leads)
    emails = bool(wanted) and wanted[-1][0] is leads.by_email_statement
    for rows in found[: len(wanted) - emails]:
        add_identifiers(graph, rows)  # a key both reached and placed comes first as reached
    by_email: dict[str, int] = {}
    for row in found[len(wanted) - 1] if emails else ():
        by_email[row.named_by] = row.id
        if row.cluster_id is not None:
            graph.lead_clusters[row.id] = row.cluster_id
            graph.cluster_leads[row.cluster_id] = row.id
    return graph, by_email


def add_identifiers(graph: Graph, rows: Iterable[Any]) -> None:
    """Identity rows (kind, value, cluster_id, lead_id, blocked_at, lead_history, linked_by,
    unlinked_lead) into the graph: an identifier unlinked from several leads comes once for
    each."""
    for row in rows:
        key = (row.kind, row.value)
        unlinked = frozenset() if row.unlinked_lead is None else frozenset({row.unlinked_lead})
        if key in graph.identifiers:
            graph.identifiers[key].unlinked |= unlinked
            continue
        graph.identifiers[key] = Identifier(
            row.cluster_id,
            list(row.lead_history),
            row.blocked_at is not None,
            row.linked_by,
            unlinked,
        )
        graph.cluster_leads[row.cluster_id] = row.lead_id
        if row.lead_id is not None:
            graph.lead_clusters[row.lead_id] = row.cluster_id


def lookup(session: Session, account_id: int, keys: Iterable[Key]) -> Graph:
    """The identifiers themselves, with their clusters' leads: enough to place events."""
    return load(session, account_id, (), (), 0, placed=keys)[0]


def _identity_columns(unlinked: Any = None) -> tuple[Any, ...]:
    i, c = identities_table.c, clusters_table.c
    # A subquery, not a join: a prepared statement's generic plan, guessing ten keys for a
    # list, would join every cluster of the account by hash instead of looking each one up.
    lead_id = (
        sa.select(c.lead_id)
        .where(c.account_id == i.account_id, c.id == i.cluster_id)
        .scalar_subquery()
        .label("lead_id")
    )
    return (
        i.kind,
        i.value,
        i.cluster_id,
        lead_id,
        i.blocked_at,
        i.lead_history,
        i.linked_by_signal_id.label("linked_by"),
        (unlinked if unlinked is not None else sa.null()).label("unlinked_lead"),
    )


def _of_keys(db: statements.Store) -> Any:
    i = identities_table.c
    return sa.and_(
        i.account_id == sa.bindparam("account_id"),
        sa.or_(
            sa.and_(i.kind == statements.constant(ANONYMOUS), db.in_(i.value, "anonymous")),
            sa.and_(i.kind == statements.constant(USER), db.in_(i.value, "users")),
        ),
    )


def lookup_statement(db: statements.Store) -> sa.Select:
    """The identifiers themselves, with their clusters' leads (ingest/plain.py sends its text
    in a pipeline)."""
    return sa.select(*_identity_columns()).where(_of_keys(db))


def _reach(db: statements.Store) -> sa.Select:
    """Every identifier of the keys' clusters, with the leads each was unlinked from: what
    identity events may link or merge (placing a plain event needs no unlinks: an unlinked
    identifier has left the lead's cluster)."""
    i, u = identities_table.c, unlinks_table.c
    unlinked = sa.and_(u.account_id == i.account_id, u.kind == i.kind, u.value == i.value)
    return (
        sa.select(*_identity_columns(u.lead_id))
        .select_from(identities_table)
        .outerjoin(unlinks_table, unlinked)
        .where(
            i.account_id == sa.bindparam("account_id"),
            i.cluster_id.in_(sa.select(i.cluster_id).where(_of_keys(db)).scalar_subquery()),
        )
    )


def write(session: Session, account_id: int, graph: Graph, now: datetime) -> None:
    """Write what replay changed: new clusters, then every changed identifier, then the
    clusters merged away."""
    real = _insert_clusters(session, account_id, graph.new_clusters, now)
    rows = [
        {
            "account_id": account_id,
            "kind": kind,
            "value": value,
            "cluster_id": real.get(entry.cluster, entry.cluster),
            "lead_history": entry.lead_history,
            "blocked_at": now if entry.blocked_now else None,
            "linked_by_signal_id": entry.linked_by,
            "created_at": now,
            "updated_at": now,
        }
        for (kind, value), entry in sorted(graph.identifiers.items())
        if entry.changed
    ]
    if rows:
        session.execute(statements.built(session, _identities_upsert), rows)
    if graph.removed_clusters:
        c = clusters_table.c
        session.execute(
            sa.delete(clusters_table).where(
                c.account_id == account_id, c.id.in_(sorted(graph.removed_clusters))
            )
        )


def _identities_upsert(db: statements.Store) -> Any:
    i = identities_table.c
    statement = db.insert(identities_table)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[i.account_id, i.kind, i.value],
        set_={
            "cluster_id": excluded.cluster_id,
            "lead_history": excluded.lead_history,
            "blocked_at": sa.func.coalesce(i.blocked_at, excluded.blocked_at),
            "linked_by_signal_id": excluded.linked_by_signal_id,
            "updated_at": excluded.updated_at,
        },
    )


def _insert_clusters(
    session: Session, account_id: int, new: dict[int, int | None], now: datetime
) -> dict[int, int]:
    """The real id of each new cluster, by its temporary (negative) id: ids taken first, so
    that the rows go in one statement whatever their number."""
    if not new:
        return {}
    temporary = sorted(new, reverse=True)
    ids = store.allocate_ids(session, clusters_table, len(temporary))
    session.execute(
        sa.insert(clusters_table),
        [
            {"account_id": account_id, "id": cluster_id, "lead_id": new[t], "created_at": now}
            for t, cluster_id in zip(temporary, ids, strict=True)
        ],
    )
    return dict(zip(temporary, ids, strict=True))


def rehydrate_stored(
    session: Session,
    account_id: int,
    rehydrations: Sequence[Rehydration],
    keep: Sequence[int],
    now: datetime,
    timeout_ms: int,
) -> dict[int, tuple[datetime, datetime]]:
    """Move the stored cold signals of each rehydration's identifiers onto its lead, the first
    rehydration in body order winning, but for the signals in keep (the body's own, which
    replay placed). Returns the first and last event time moved onto each lead.

    On Postgres one statement, whatever their number; a visitor with a very long anonymous
    history may take longer than the usual statement timeout, so it gets timeout_ms."""
    if not rehydrations:
        return {}
    spans: dict[int, tuple[datetime, datetime]] = {}
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        rows = [
            (kind, value, r.lead_id, r.cause, position)
            for position, r in enumerate(rehydrations)
            for kind, value in r.keys
        ]
        params = {
            "kinds": [row[0] for row in rows],
            "values": [row[1] for row in rows],
            "leads": [row[2] for row in rows],
            "causes": [row[3] for row in rows],
            "positions": [row[4] for row in rows],
            "account": account_id,
            "keep": list(keep),
            "now": now,
        }
        # One round trip: the longer timeout, the move, the connection's own timeout again.
        _, moved, _ = DriverCursor(session).execute_together(
            [
                (_LONGER_TIMEOUT, {"ms": str(timeout_ms)}),
                (_REHYDRATE_ALL, params),
                (_OWN_TIMEOUT, None),
            ]
        )
    else:
        moved = []
        for r in rehydrations:
            moved += connection.execute(
                _REHYDRATE_ONE,
                {
                    "account": account_id,
                    "lead": r.lead_id,
                    "cause": r.cause,
                    "now": now,
                    "keep": list(keep),
                    **by_kind(r.keys),
                },
            ).all()
    metrics.REHYDRATED.inc(len(moved))
    for lead_id, occurred_at in moved:
        if occurred_at.tzinfo is None:  # SQLite gives naive datetimes back
            occurred_at = occurred_at.replace(tzinfo=UTC)
        earliest, latest = spans.get(lead_id, (occurred_at, occurred_at))
        spans[lead_id] = (min(earliest, occurred_at), max(latest, occurred_at))
    return spans


# Each identifier finds its cold signals through the partial index of its kind; a signal that
# two rehydrations find goes to the first.
_REHYDRATE_ALL = """
    WITH r AS (
        SELECT * FROM unnest(%(kinds)s::varchar[], %(values)s::varchar[], %(leads)s::bigint[],
                             %(causes)s::bigint[], %(positions)s::int[])
          AS r (kind, value, lead_id, cause, position)
    ), found AS (
        SELECT DISTINCT ON (f.id) f.id, f.lead_id, f.cause
        FROM (SELECT s.id, r.lead_id, r.cause, r.position
              FROM r JOIN signals AS s
                ON s.account_id = %(account)s AND s.is_cold AND r.kind = 'anonymous_id'
               AND s.anonymous_id = r.value
              UNION ALL
              SELECT s.id, r.lead_id, r.cause, r.position
              FROM r JOIN signals AS s
                ON s.account_id = %(account)s AND s.is_cold AND r.kind = 'user_id'
               AND s.user_id = r.value
             ) AS f
        ORDER BY f.id, f.position
    )
    UPDATE signals AS s
    SET lead_id = found.lead_id, is_cold = false, linked_by_signal_id = found.cause,
        linked_at = %(now)s
    FROM found
    WHERE s.account_id = %(account)s AND s.id = found.id AND NOT (s.id = ANY(%(keep)s::bigint[]))
    RETURNING s.lead_id, s.occurred_at
"""


def _rehydrate_one() -> sa.Update:
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
            s.id.not_in(sa.bindparam("keep", expanding=True)),
        )
        .values(
            lead_id=sa.bindparam("lead"),
            is_cold=False,
            linked_by_signal_id=sa.bindparam("cause"),
            linked_at=sa.bindparam("now"),
        )
        .returning(s.lead_id, s.occurred_at)
    )


_REHYDRATE_ONE = _rehydrate_one()


_LONGER_TIMEOUT = "SELECT set_config('statement_timeout', %(ms)s, true)"
_OWN_TIMEOUT = "RESET statement_timeout"


def cluster_keys(session: Session, account_id: int, cluster_id: int) -> list[Key]:
    i = identities_table.c
    rows = session.execute(
        sa.select(i.kind, i.value).where(i.account_id == account_id, i.cluster_id == cluster_id)
    )
    return [(row.kind, row.value) for row in rows]


def forget_cluster(session: Session, account_id: int, cluster_id: int) -> None:
    i, c = identities_table.c, clusters_table.c
    session.execute(
        sa.delete(identities_table).where(i.account_id == account_id, i.cluster_id == cluster_id)
    )
    session.execute(sa.delete(clusters_table).where(c.account_id == account_id, c.id == cluster_id))
