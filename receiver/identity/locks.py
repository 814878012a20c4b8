"""Who waits for whom: the account's rules lock and the identity locks.

The race they prevent: a track that finds no lead for its visitor goes to cold storage, while
an identify of the same visitor moves that visitor's cold signals onto a lead. Were both to
run at once, the track could commit cold just after the identify had rehydrated, and stay
stranded. So every event locks the identifiers it places its signal by: shared when it only
reads the identity graph (a track, a page, and a returning visitor's identify, which links
nothing: resolve.links_nothing), exclusive when it changes it (identify, alias, group, delete,
and events a rule gives lead fields). Events of different visitors take different locks and
never wait for each other; a hot visitor slows down only itself, and a returning visitor's
tracks and identifies do not wait for each other either.

An identity event changes more than its own identifiers: merging clusters moves the cold
signals of every identifier in them, and a lead is found by its email. So it locks exclusive
its identifiers, its email, the leads it reaches and every identifier of the clusters involved
(the closure, found by reading the graph: see `lock_closure`).

The lock order, the same for every writer (ingestion's two lanes, rule changes and backfill,
retention, deletion), so that waiting never turns into a deadlock:

  1. the account's rules lock: shared by everything that maps events, exclusive by a rule
     change, so no event is matched against rules older than the account's rules version;
  2. identity locks, in ascending key order, in one statement (`lock_identities`);
  3. identity locks found by reading the graph: taken without waiting (`lock_closure`); one
     that another transaction holds makes this transaction start again (`LockConflict`,
     retried by db.run_transaction), with nothing carried over;
  4. row locks, in this order: new signals (their unique index), the month's usage counter,
     then leads in id order, then Signal Queue groups in key order. A lead row is written only
     after the counter is claimed, so writers of an account line up on the counter for the
     last few statements of their transaction and never wait on each other's leads in a circle.
     A lead's traits are read again under its row lock before the body's are merged in
     (deferred.py): identifies holding only shared identity locks may enrich one lead at once.

Locks are transaction-scoped: commit or rollback releases them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import sqlalchemy as sa
from sqlmodel import Session

from receiver.db import DriverCursor, StartOver

LOCK_NAMESPACE = 0x52_43  # the first key of the two-int advisory lock space, ours
SHARED, EXCLUSIVE = "shared", "exclusive"
# Identity locks use the one-bigint advisory lock space, apart from the two-int one above.
EMAIL, LEAD = "email", "lead"


class LockConflict(StartOver):
    """An identity lock found by reading the graph is held by another transaction: this one
    starts again from the beginning (retried by db.run_transaction)."""


def lock_account(session: Session, account_id: int, mode: str) -> None:
    """The account's rules lock (order 1)."""
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite runs one writing transaction at a time (BEGIN IMMEDIATE) anyway
    session.connection().execute(
        _ACCOUNT_LOCKS[mode], {"namespace": LOCK_NAMESPACE, "account": account_id % 2**31}
    )


def identity_key(account_id: int, kind: str, value: str | int) -> int:
    """The advisory lock key of an identifier (kind anonymous_id or user_id), an email or a
    lead, as a signed 64-bit integer. Two values that share a key only wait for each other."""
    digest = hashlib.blake2b(f"{account_id}\0{kind}\0{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_identities(session: Session, exclusive: Iterable[int], shared: Iterable[int] = ()) -> None:
    """Order 2: every key in ascending order, each once, exclusive where asked."""
    if session.get_bind().dialect.name != "postgresql":
        return
    text, params = identity_locks_statement(exclusive, shared)
    if params["keys"]:
        DriverCursor(session).execute(text, params)


def identity_locks_statement(
    exclusive: Iterable[int], shared: Iterable[int] = ()
) -> tuple[str, dict[str, list]]:
    """lock_identities' statement and its parameters, for a caller that sends it in a round
    trip with others (Postgres)."""
    return IDENTITY_LOCKS_SQL, identity_lock_params(exclusive, shared)


def lock_closure(session: Session, keys: Iterable[int], held: set[int]) -> None:
    """Order 3: the exclusive locks not yet held, without waiting; LockConflict when one is
    taken. Adds them to held."""
    if session.get_bind().dialect.name != "postgresql":
        return
    missing = sorted(set(keys) - held)
    if not missing:
        return
    granted = session.connection().execute(_TRY_LOCKS, {"keys": missing}).scalar_one()
    if not granted:
        raise LockConflict()
    held.update(missing)


_ACCOUNT_LOCKS = {
    EXCLUSIVE: sa.text("SELECT pg_advisory_xact_lock(:namespace, :account)"),
    SHARED: sa.text("SELECT pg_advisory_xact_lock_shared(:namespace, :account)"),
}
# The locks are taken in the outer query, over keys sorted by the inner one: in key order.
IDENTITY_LOCKS_SQL = (
    "SELECT count(CASE WHEN o.exclusive THEN pg_advisory_xact_lock(o.key)::text"
    " ELSE pg_advisory_xact_lock_shared(o.key)::text END)"
    " FROM (SELECT * FROM unnest(%(keys)s::bigint[], %(exclusive)s::boolean[])"
    " AS u(key, exclusive) ORDER BY u.key) AS o"
)
_TRY_LOCKS = sa.text(
    "SELECT coalesce(bool_and(pg_try_advisory_xact_lock(o.key)), true)"
    " FROM (SELECT * FROM unnest(CAST(:keys AS bigint[])) AS u(key) ORDER BY u.key) AS o"
)


def identity_lock_params(exclusive: Iterable[int], shared: Iterable[int]) -> dict[str, list]:
    """IDENTITY_LOCKS_SQL's parameters: every key once, exclusive where asked."""
    exclusive = set(exclusive)
    modes = sorted({**{key: False for key in shared}, **{key: True for key in exclusive}}.items())
    return {"keys": [key for key, _ in modes], "exclusive": [mode for _, mode in modes]}
