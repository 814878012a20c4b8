"""The express lane: a body of plain events (no identity effects) stored on Postgres in two
round trips and a commit, for most of Segment's traffic (tracks and pages).

The general path (pipeline.py) does the same work a statement at a time through the
Session, and takes everything else: identity events and what rules turn into them, a body
over the month's limit, and SQLite. On Postgres every transaction that holds the account's
lock shared is one of this lane's; the general path writes only under it exclusive.

- the account's identity lock, taken shared, and only for a valid key (identity/locks.py);
- the rules version and the identity lookup, read in a statement of their own after the
  lock, so they see everything committed before it was granted (pipeline.map_and_lock);
- one statement that inserts the signals (ON CONFLICT DO NOTHING), claims the month's usage,
  widens their leads' first and last seen and counts the unmapped ones into the Signal
  Queue, all from the rows it inserted (store.py, identity/leads.py, rules/queue.py).

The leads and the queue groups are touched only once the counter is claimed (they read
`claimed`), so writers of an account queue on the counter's row and never wait on each
other's leads or groups in a circle; queue groups go in key order, as purges take them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg

from receiver.accounts import Sender
from receiver.credentials import API_KEY_KIND, parse_credential
from receiver.errors import Unauthorized
from receiver.identity import graph, resolve
from receiver.identity.locks import LOCK_NAMESPACE
from receiver.identity.resolve import Applied, Policy
from receiver.ingest import store
from receiver.ingest.pipeline import (
    NeedsExclusive,
    Outcome,
    OverBudget,
    Prepared,
    mapped,
    outcome_of,
)
from receiver.ingest.segment import Draft
from receiver.rules import engine


def applies(dialect: str, prepared: Prepared) -> bool:
    return dialect == "postgresql" and not any(resolve.changes_identity(d) for d in prepared.drafts)


def store_body(
    connection: psycopg.Connection,
    api_key: str | None,
    check_secret: Callable[[Sender], None],
    prepared: Prepared,
    now: datetime,
    policy: Policy,
) -> Outcome:
    """Store the body in the connection's transaction (the caller commits). check_secret
    is called with the Sender, and raises when the request does not carry its secret."""
    key = parse_credential(api_key, API_KEY_KIND) if api_key else None
    if key is None:
        raise Unauthorized()
    drafts = prepared.drafts
    keys = {k for d in drafts for k in graph.keys_of(d)}
    with connection.pipeline():
        key_cursor = connection.execute(
            _LOCK_FOR_KEY,
            {
                "account_id": key.account_id,
                "key_hash": key.digest,
                "namespace": LOCK_NAMESPACE,
                "lock_key": key.account_id % 2**31,
            },
        )
        graph_cursor = connection.execute(
            _RULES_VERSION_AND_LOOKUP,
            {
                "account_id": key.account_id,
                "anonymous": sorted(v for kind, v in keys if kind == graph.ANONYMOUS),
                "users": sorted(v for kind, v in keys if kind == graph.USER),
            },
        )
    row, graph_rows = key_cursor.fetchone(), graph_cursor.fetchall()
    if row is None or not graph_rows:
        raise Unauthorized()
    sender = Sender(key.account_id, row[0], row[1], row[2], row[3])
    check_secret(sender)
    version, known = _version_and_known(graph_rows)
    drafts = _mapped(connection, sender.account_id, version, drafts)
    placements = [resolve.place(d, known) for d in drafts]
    period_start, _ = store.period_of(now)
    stored = connection.execute(
        _STORE,
        {
            "rows": _rows(drafts, placements),
            "account_id": sender.account_id,
            "now": now,
            "period_start": period_start,
            "limit": sender.signal_limit,
        },
    )
    applied = Applied()
    claimed = True
    for content_hash, signal_id, claim in stored.fetchall():
        applied.inserted[content_hash] = signal_id
        claimed = claim
    if not claimed:
        new_hashes = [d.content_hash for d in drafts if d.content_hash in applied.inserted]
        raise OverBudget(sender, prepared, new_hashes, now, policy)
    applied.cold = {
        d.content_hash
        for d, p in zip(drafts, placements, strict=True)
        if p.is_cold and d.content_hash in applied.inserted
    }
    return outcome_of(prepared, applied, accepted=len(drafts))


def _version_and_known(rows: Sequence[Any]) -> tuple[int, dict[graph.Key, graph.Known]]:
    known = {(row[1], row[2]): graph.known_of(*row[3:]) for row in rows if row[1] is not None}
    return rows[0][0], known


def _mapped(
    connection: psycopg.Connection, account_id: int, version: int, drafts: list[Draft]
) -> list[Draft]:
    rules = engine.rules_at(account_id, version, lambda: _enabled_rules(connection, account_id))
    if not rules:
        return drafts
    drafts = mapped(rules, drafts)
    if any(resolve.changes_identity(d) for d in drafts):
        raise NeedsExclusive()
    return drafts


def _enabled_rules(connection: psycopg.Connection, account_id: int) -> list[dict[str, Any]]:
    cursor = connection.cursor(row_factory=dict_row)
    return cursor.execute(_ENABLED_RULES, {"account_id": account_id}).fetchall()


def _rows(drafts: Sequence[Draft], placements: Sequence[store.Placement]) -> str:
    """The signals to insert as one JSON array: a single parameter, serialised in one call
    and read by Postgres in one pass, whatever the size of the body."""
    return orjson.dumps(
        [
            # JSON has no bytes: the hash travels as hex, decoded by the statement.
            {**store.signal_columns(d, p), "content_hash": d.content_hash.hex()}
            for d, p in zip(drafts, placements, strict=True)
        ],
        default=_datetime_subclass,
    ).decode()


def _datetime_subclass(value: Any) -> str:
    # orjson writes datetimes itself, but not their subclasses (a frozen clock's, in tests).
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


_ENABLED_RULES = str(engine.ENABLED_RULES.compile(dialect=postgresql_psycopg.dialect()))

# The lock is taken in the projection, so only for the row of a valid, unrevoked key.
_LOCK_FOR_KEY = """
    SELECT k.id, k.secret, a.plan, a.signal_limit,
           pg_advisory_xact_lock_shared(%(namespace)s, %(lock_key)s)
    FROM api_keys AS k JOIN accounts AS a ON a.id = k.account_id
    WHERE k.account_id = %(account_id)s AND k.key_hash = %(key_hash)s AND k.revoked_at IS NULL
"""

# One row per known identifier, or one row of NULLs: the version comes either way.
_RULES_VERSION_AND_LOOKUP = """
    SELECT a.rules_version, i.kind, i.value, i.cluster_id, c.lead_id,
           i.blocked_at, i.lead_history
    FROM accounts AS a
    LEFT JOIN (identities AS i
               JOIN identity_clusters AS c
                 ON c.account_id = i.account_id AND c.id = i.cluster_id)
      ON i.account_id = a.id
     AND ((i.kind = 'anonymous_id' AND i.value = ANY(%(anonymous)s::varchar[]))
          OR (i.kind = 'user_id' AND i.value = ANY(%(users)s::varchar[])))
    WHERE a.id = %(account_id)s
"""

_STORE = """
    WITH new AS (
        INSERT INTO signals (account_id, source, event_type, event_name, anonymous_id,
                             user_id, message_id, content_hash, payload, occurred_at,
                             received_at, lead_id, is_cold, rule_id, mapped_name, score,
                             mapped_fields)
        SELECT %(account_id)s, source, event_type, event_name, anonymous_id, user_id,
               message_id, decode(content_hash, 'hex'), payload, occurred_at, %(now)s,
               lead_id, is_cold, rule_id, mapped_name, score, mapped_fields
        FROM jsonb_to_recordset(%(rows)s::jsonb)
          AS body (source varchar, event_type varchar, event_name varchar,
                   anonymous_id varchar, user_id varchar, message_id varchar,
                   content_hash text, payload jsonb, occurred_at timestamptz, lead_id bigint,
                   is_cold boolean, rule_id bigint, mapped_name varchar, score integer,
                   mapped_fields jsonb)
        ON CONFLICT (account_id, content_hash) DO NOTHING
        RETURNING id, content_hash, source, event_type, event_name, payload, occurred_at,
                  lead_id, rule_id
    ),
    claimed AS (
        INSERT INTO usage_counters AS u (account_id, period_start, used)
        SELECT %(account_id)s, %(period_start)s, count(*) FROM new
        HAVING count(*) BETWEEN 1 AND %(limit)s
        ON CONFLICT (account_id, period_start) DO UPDATE SET used = u.used + excluded.used
        WHERE u.used + excluded.used <= %(limit)s
        RETURNING used
    ),
    touched AS (
        UPDATE leads AS l
        SET first_seen_at = LEAST(l.first_seen_at, span.earliest),
            last_seen_at = GREATEST(l.last_seen_at, span.latest)
        FROM (SELECT lead_id, min(occurred_at) AS earliest, max(occurred_at) AS latest
              FROM new WHERE lead_id IS NOT NULL AND EXISTS (SELECT FROM claimed)
              GROUP BY lead_id) AS span
        WHERE l.account_id = %(account_id)s AND l.id = span.lead_id
    ),
    queued AS (
        INSERT INTO queue_groups AS q (account_id, source, event_type, event_name, count,
                                       first_seen_at, last_seen_at, sample)
        SELECT %(account_id)s, source, coalesce(event_type, ''), coalesce(event_name, ''),
               count(*), %(now)s, %(now)s, (array_agg(payload ORDER BY id))[1]
        FROM new WHERE rule_id IS NULL AND EXISTS (SELECT FROM claimed)
        GROUP BY 2, 3, 4
        ORDER BY 2, 3, 4
        ON CONFLICT (account_id, source, event_type, event_name) DO UPDATE
        SET count = q.count + excluded.count, last_seen_at = excluded.last_seen_at
    )
    SELECT content_hash, id, EXISTS (SELECT FROM claimed) FROM new
"""
