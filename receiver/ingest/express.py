"""The express lane: a body of plain events (no identity effects) stored on Postgres in one
statement, for most of Segment's traffic (tracks and pages).

The general path (pipeline.py) does the same work a statement at a time through the
Session, and takes everything else: identity events and what rules turn into them, a body
over the month's limit, and SQLite. On Postgres every transaction that holds the account's
lock shared is one of this lane's; the general path writes only under it exclusive.

The statement calls `receiver_store_plain` (sql/store_plain.sql) in a transaction of its own:
it checks the key, takes the account's identity lock shared, places each event by the
identity graph as it stands under the lock, inserts the signals and, from the rows it
inserted, claims the month's usage, widens leads' first and last seen and counts the Signal
Queue.

The key's secret and the account's rules are applied here, before the statement, as this
process last read them (KeyState); the function stores nothing unless they are still the
key's secret and the account's rules version under the lock. When they are not, the lane
reads them again and retries: a rule change costs one more round trip, never a wrong mapping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from cachetools import LRUCache
from psycopg.rows import dict_row
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg

from receiver.credentials import API_KEY_KIND, Credential, parse_credential
from receiver.errors import Unauthorized
from receiver.identity import resolve
from receiver.identity.identifiers import usable
from receiver.identity.locks import LOCK_NAMESPACE
from receiver.identity.resolve import Applied
from receiver.ingest import store
from receiver.ingest.pipeline import NeedsExclusive, Outcome, Prepared, mapped, outcome_of
from receiver.ingest.segment import Draft
from receiver.rules import engine
from receiver.sealing import secret_of

# Raised by receiver_store_plain when the new signals do not all fit in the month's limit.
OVER_LIMIT_SQLSTATE = "RL429"
# A key whose rules change under every attempt goes to the general path, which waits.
ATTEMPTS = 3


def applies(dialect: str, prepared: Prepared) -> bool:
    return dialect == "postgresql" and not any(resolve.changes_identity(d) for d in prepared.drafts)


@dataclass(frozen=True)
class KeyState:
    """What the lane assumes of a key: its secret, its account's rules and their version."""

    secret: str | None
    rules_version: int
    rules: tuple[engine.CompiledRule, ...]


def store_body(
    connection: psycopg.Connection,
    api_key: str | None,
    check_secret: Callable[[str | None], None],
    prepared: Prepared,
    now: datetime,
) -> Outcome:
    """Store the body, each statement in a transaction of its own (the connection is in
    autocommit). check_secret raises when the request does not carry the key's secret."""
    key = parse_credential(api_key, API_KEY_KIND) if api_key else None
    if key is None:
        raise Unauthorized()
    state = _remembered(key.digest)
    if state is not None:
        try:
            check_secret(secret_of(state.secret))
        except Unauthorized:
            state = None  # the secret may have changed since: read it again
    for _ in range(ATTEMPTS):
        if state is None:
            state = _read_state(connection, key)
            check_secret(secret_of(state.secret))
        reply = _store(connection, key, state, _mapped(state.rules, prepared.drafts), now)
        if reply is not None:
            return outcome_of(prepared, reply, accepted=len(prepared.drafts))
        state = None
    raise NeedsExclusive()


def _mapped(rules: Sequence[engine.CompiledRule], drafts: list[Draft]) -> list[Draft]:
    if not rules:
        return drafts
    drafts = mapped(rules, drafts)
    if any(resolve.changes_identity(d) for d in drafts):
        raise NeedsExclusive()
    return drafts


def _store(
    connection: psycopg.Connection,
    key: Credential,
    state: KeyState,
    drafts: list[Draft],
    now: datetime,
) -> Applied | None:
    """What was stored, or None when the key's secret or rules were not as assumed."""
    period_start, _ = store.period_of(now)
    try:
        row = connection.execute(
            _STORE_PLAIN,
            {
                "account_id": key.account_id,
                "key_hash": key.digest,
                "secret": state.secret,
                "rules_version": state.rules_version,
                "namespace": LOCK_NAMESPACE,
                "lock_key": key.account_id % 2**31,
                "rows": _rows(drafts),
                "now": now,
                "period_start": period_start,
            },
        ).fetchone()
    except psycopg.Error as error:
        if error.sqlstate == OVER_LIMIT_SQLSTATE:
            raise NeedsExclusive() from error  # the general path stores what fits
        raise
    assert row is not None
    outcome, hashes, ids, cold = row
    if outcome == "unauthorized":
        _forget(key.digest)
        raise Unauthorized()
    if outcome == "stale":
        _forget(key.digest)
        return None
    applied = Applied()
    applied.inserted = dict(zip(hashes or (), ids or (), strict=True))
    applied.cold = {h for h, c in zip(hashes or (), cold or (), strict=True) if c}
    return applied


def _read_state(connection: psycopg.Connection, key: Credential) -> KeyState:
    """The key's secret and its account's rules, read in one statement so that the rules
    are those of the version read with them."""
    rows = (
        connection.cursor(row_factory=dict_row)
        .execute(_KEY_AND_RULES, {"account_id": key.account_id, "key_hash": key.digest})
        .fetchall()
    )
    if not rows:
        raise Unauthorized()
    version = rows[0]["rules_version"]
    rule_rows = [row for row in rows if row["id"] is not None]
    rules = engine.rules_at(key.account_id, version, lambda: rule_rows)
    state = KeyState(rows[0]["secret"], version, rules)
    _remember(key.digest, state)
    return state


def _rows(drafts: Sequence[Draft]) -> str:
    """The signals to insert as one JSON array: a single parameter, serialised in one call
    and read by Postgres in one pass, whatever the size of the body."""
    return orjson.dumps(
        [
            {
                **store.event_columns(d),
                # JSON has no bytes: the hash travels as hex, decoded by the statement.
                "content_hash": d.content_hash.hex(),
                # The identifiers the function places the signal by, as graph.keys_of.
                "user_key": usable(d.user_id),
                "anonymous_key": usable(d.anonymous_id),
            }
            for d in drafts
        ],
        default=_datetime_subclass,
    ).decode()


def _datetime_subclass(value: Any) -> str:
    # orjson writes datetimes itself, but not their subclasses (a frozen clock's, in tests).
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


# The last state read of each key, in this process, by the key's hash: no key in the clear
# stays in memory.
_states: LRUCache[bytes, KeyState] = LRUCache(maxsize=1024)
_states_lock = threading.Lock()


def _remembered(key_hash: bytes) -> KeyState | None:
    with _states_lock:
        return _states.get(key_hash)


def _remember(key_hash: bytes, state: KeyState) -> None:
    with _states_lock:
        _states[key_hash] = state


def _forget(key_hash: bytes) -> None:
    with _states_lock:
        _states.pop(key_hash, None)


_KEY_AND_RULES = f"""
    SELECT k.secret, a.rules_version, r.*
    FROM api_keys AS k
    JOIN accounts AS a ON a.id = k.account_id
    LEFT JOIN ({engine.ENABLED_RULES.compile(dialect=postgresql_psycopg.dialect())}) AS r ON true
    WHERE k.account_id = %(account_id)s AND k.key_hash = %(key_hash)s AND k.revoked_at IS NULL
    ORDER BY r.priority DESC, r.id  -- as ENABLED_RULES orders them
"""

_STORE_PLAIN = """
    SELECT outcome, content_hashes, signal_ids, cold
    FROM receiver_store_plain(%(account_id)s, %(key_hash)s, %(secret)s, %(rules_version)s,
                              %(namespace)s, %(lock_key)s, %(rows)s::jsonb, %(now)s,
                              %(period_start)s)
"""
