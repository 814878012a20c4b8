"""Plain bodies on Postgres (tracks, pages, generic webhooks: most of Segment's traffic), sent
in two round trips on the driver's connection.

The same statements as pipeline.py's, in the same order, only pipelined: first the key, the
rules lock and what is read under it (receiver_begin), the identity locks and the lookup of
the body's identifiers; then, the events mapped and placed here (identity/replay.py's
placement, the one there is), the insert and settle of the placed signals
(receiver_store_placed) and the commit. A Session would spend a round trip on each.

A body that turns out not to be plain after all (its rules give it lead fields) or that may not
fit in the month's limit is left to pipeline.py, from scratch, with nothing stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row, namedtuple_row
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg

from receiver import statements, store
from receiver.accounts import Sender
from receiver.credentials import API_KEY_KIND, parse_credential
from receiver.errors import Unauthorized
from receiver.events import Draft
from receiver.identity import graph, locks, resolve
from receiver.identity.replay import Graph
from receiver.identity.resolve import Applied
from receiver.ingest.pipeline import (
    BEGIN_SQL,
    Outcome,
    Prepared,
    begin_params,
    mapped,
    outcome_of,
)
from receiver.ingest.signature import FIRST_ELEMENT
from receiver.rules import engine
from receiver.sealing import secret_of

OVER_LIMIT_SQLSTATE = "RL429"  # raised by receiver_store_placed


def applies(dialect: str, prepared: Prepared) -> bool:
    return dialect == "postgresql" and not any(resolve.changes_identity(d) for d in prepared.drafts)


def store_body(
    connection: psycopg.Connection,
    api_key: str | None,
    check_secret: Callable[[str | None, bool], str | None],
    prepared: Prepared,
    now: datetime,
    store_name: str,
) -> Outcome | None:
    """Store the body and commit; None, with nothing stored, when it is pipeline.py's after
    all. check_secret raises when the request does not carry the key's secret; store_name
    is the store the rules cache knows it by (engine.store_of)."""
    key = parse_credential(api_key, API_KEY_KIND) if api_key else None
    if key is None:
        raise Unauthorized()
    period_start, _ = store.period_of(now)
    drafts = prepared.drafts
    keys = [graph.keys_of(d) for d in drafts]
    lookup = {"account_id": key.account_id, **graph.by_kind(k for ks in keys for k in ks)}
    shared = {locks.identity_key(key.account_id, kind, value) for ks in keys for kind, value in ks}
    with connection.pipeline():
        connection.execute("BEGIN")  # run_on_driver's connection is in autocommit
        begun = connection.execute(BEGIN_SQL, begin_params(key, period_start))
        connection.execute(*locks.identity_locks_statement((), shared))
        found = connection.cursor(row_factory=namedtuple_row)
        found.execute(*statements.driver_statement(graph.lookup_statement, lookup))
    row = begun.fetchone()
    if row is None:
        raise Unauthorized()
    key_id, sealed, plan, limit, version, used, whole_body = row
    secret = secret_of(sealed)
    if check_secret(secret, whole_body) == FIRST_ELEMENT:
        return None  # pipeline.py checks what a first-element signature may authorise
    sender = Sender(key.account_id, key_id, secret, plan, limit, whole_body)
    rules = _rules(connection, store_name, key.account_id, version)
    drafts = mapped(rules, drafts) if rules else drafts
    if any(resolve.changes_identity(d) for d in drafts):
        return None
    if used + len(drafts) > limit:
        return None
    body_graph = Graph({}, {}, {}, 0)
    graph.add_identifiers(body_graph, found.fetchall())
    applied = _store(connection, sender, drafts, [body_graph.place(k) for k in keys], now)
    if applied is None:
        return None
    return outcome_of(prepared, applied, accepted=len(drafts))


def _store(
    connection: psycopg.Connection,
    sender: Sender,
    drafts: Sequence[Draft],
    placements: Sequence[Any],
    now: datetime,
) -> Applied | None:
    period_start, _ = store.period_of(now)
    try:
        with connection.pipeline():
            stored = connection.execute(
                STORE_PLACED_SQL,
                (
                    sender.account_id,
                    period_start,
                    sender.signal_limit,
                    store.signal_rows_json(drafts, placements),
                    now,
                ),
            )
            connection.execute("COMMIT")
    except psycopg.Error as error:
        if error.sqlstate == OVER_LIMIT_SQLSTATE:
            connection.rollback()
            return None  # others claimed the rest of the limit since: pipeline.py settles it
        raise
    hashes, ids, cold = stored.fetchone() or (None, None, None)
    applied = Applied()
    applied.inserted = dict(zip(hashes or (), ids or (), strict=True))
    applied.cold = {h for h, c in zip(hashes or (), cold or (), strict=True) if c}
    return applied


def _rules(
    connection: psycopg.Connection, store_name: str, account_id: int, version: int
) -> tuple[Any, ...]:
    """The account's enabled rules at this version, read once per process and version."""

    def fetch() -> list[dict[str, Any]]:
        cursor = connection.cursor(row_factory=dict_row)
        return cursor.execute(_ENABLED_RULES, {"account_id": account_id}).fetchall()

    return engine.rules_at(store_name, account_id, version, fetch)


_ENABLED_RULES = str(engine.ENABLED_RULES.compile(dialect=postgresql_psycopg.dialect()))
STORE_PLACED_SQL = (
    "SELECT content_hashes, signal_ids, cold FROM receiver_store_placed(%s, %s, %s, %s::jsonb, %s)"
)
