"""Set-based writes of signals and of the plan counter. Uniqueness is the database's job:
every insert is ON CONFLICT DO NOTHING, never a read before a write."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver import exact_json
from receiver.db import DriverCursor
from receiver.events import Draft, Placement
from receiver.models import leads_table, queue_table, signals_table, usage_table
from receiver.statements import Store, built, run

GroupKey = tuple[str, str, str]


def upsert(session: Session, table: sa.Table) -> Any:
    """The dialect's INSERT of table, for ON CONFLICT clauses."""
    return Store(session.get_bind().dialect.name).insert(table)


def _signal_insert(db: Store) -> Any:
    c = signals_table.c
    return (
        db.insert(signals_table)
        .on_conflict_do_nothing(index_elements=[c.account_id, c.content_hash])
        .returning(c.content_hash, c.id)
    )


def _usage_claim(db: Store) -> Any:
    c = usage_table.c
    count = sa.bindparam("count", type_=sa.BigInteger)
    statement = db.insert(usage_table).values(
        account_id=sa.bindparam("account_id"), period_start=sa.bindparam("period_start"), used=count
    )
    return statement.on_conflict_do_update(
        index_elements=[c.account_id, c.period_start],
        set_={"used": c.used + count},
        where=c.used + count <= sa.bindparam("limit", type_=sa.BigInteger),
    ).returning(c.used)


def insert_signals(
    session: Session,
    account_id: int,
    drafts: Sequence[Draft],
    placements: Sequence[Placement],
    received_at: datetime,
    ids: Sequence[int] | None = None,
) -> dict[bytes, int]:
    """Insert the placed drafts (with the ids given, if any) in one statement; returns the
    id of each newly stored signal by content hash. Duplicates of stored signals are skipped."""
    if not drafts:
        return {}
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        inserted = DriverCursor(session).execute(
            INSERT_SIGNALS, (account_id, signal_rows_json(drafts, placements, ids), received_at)
        )
        return {bytes(digest): signal_id for signal_id, digest in inserted}
    rows = [
        {
            "account_id": account_id,
            "received_at": received_at,
            **signal_columns(d, p),
            "linked_at": received_at if p.linked_by is not None else None,
            **({"id": ids[n]} if ids is not None else {}),
        }
        for n, (d, p) in enumerate(zip(drafts, placements, strict=True))
    ]
    inserted = connection.execute(built(session, _signal_insert), rows)
    return {digest: signal_id for digest, signal_id in inserted}


@dataclass(frozen=True, slots=True)
class NewSignal:
    """A signal this body stored, where it finally went, and its event."""

    signal_id: int
    lead_id: int | None
    draft: Draft


def settle(
    session: Session,
    account_id: int,
    period_start: date,
    limit: int,
    new: Sequence[NewSignal],
    spans: dict[int, tuple[datetime, datetime]],
    now: datetime,
) -> bool:
    """Claim the month's usage for the new signals, then widen their leads' first and last
    seen (and those of spans: leads that older signals moved onto), then count the unmapped
    ones into the Signal Queue; in that order (identity/locks.py). False, with nothing
    written, when they do not all fit in the month's limit.

    Postgres: receiver_settle (sql/store.sql). SQLite: the same steps here, held to the same
    results by tests/functional/test_body_order.py (test_sqlite_stores_a_body_as_postgres_does)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        settled = DriverCursor(session).execute(
            SETTLE, (account_id, period_start, limit, new_signals_json(new), spans_json(spans), now)
        )
        return bool(settled.fetchone()[0])
    if not claim_usage(session, account_id, period_start, len(new), limit):
        return False
    widened = dict(spans)
    for signal in new:
        if signal.lead_id is not None:
            widen(widened, signal.lead_id, signal.draft.occurred_at, signal.draft.occurred_at)
    for lead_id in sorted(widened):
        widen_lead(session, account_id, lead_id, *widened[lead_id])
    count_into_queue(session, account_id, [s.draft for s in new if s.draft.match is None], now)
    return True


def widen(
    spans: dict[int, tuple[datetime, datetime]], lead_id: int, earliest: datetime, latest: datetime
) -> None:
    span = spans.get(lead_id)
    spans[lead_id] = (
        (earliest, latest) if span is None else (min(span[0], earliest), max(span[1], latest))
    )


def replace_placements(
    session: Session, account_id: int, placements: Sequence[tuple[int, Placement]], now: datetime
) -> None:
    """Put signals of this transaction where identity resolution finally placed them."""
    if not placements:
        return
    c = signals_table.c
    session.execute(
        sa.update(signals_table)
        .where(c.account_id == account_id, c.id == sa.bindparam("signal_id"))
        .values(
            lead_id=sa.bindparam("new_lead_id"),
            is_cold=sa.bindparam("new_is_cold"),
            linked_by_signal_id=sa.bindparam("new_linked_by"),
            linked_at=sa.bindparam("new_linked_at"),
        ),
        [
            {
                "signal_id": signal_id,
                "new_lead_id": p.lead_id,
                "new_is_cold": p.is_cold,
                "new_linked_by": p.linked_by,
                "new_linked_at": now if p.linked_by is not None else None,
            }
            for signal_id, p in placements
        ],
    )


def signal_columns(draft: Draft, placement: Placement) -> dict[str, Any]:
    """A new signal's row, but for its account, its id and when it was received (and so
    linked)."""
    return {**event_columns(draft), **_placed(placement)}


def signal_rows_json(
    drafts: Sequence[Draft], placements: Sequence[Placement], ids: Sequence[int] | None = None
) -> str:
    """The rows of receiver_insert_signals: a single parameter, serialised in one call and
    read by Postgres in one pass, whatever the size of the body."""
    return json_text(
        [
            {
                **event_columns(d),
                "content_hash": d.content_hash.hex(),
                **_placed(p),
                "id": ids[n] if ids is not None else None,
            }
            for n, (d, p) in enumerate(zip(drafts, placements, strict=True))
        ]
    )


def _placed(placement: Placement) -> dict[str, Any]:
    return {
        "lead_id": placement.lead_id,
        "is_cold": placement.is_cold,
        "linked_by_signal_id": placement.linked_by,
    }


def allocate_ids(session: Session, table: sa.Table, count: int) -> list[int]:
    """Ids for rows of table about to be inserted, taken first so that rows can refer to each
    other before any is written (identity resolution links signals to the events that moved
    them, identifiers to their new clusters)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return [row.id for row in run(session, next_ids, next_ids_params(table, count))]
    # SQLite has one writing transaction at a time (BEGIN IMMEDIATE): the next ids are free.
    last = connection.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0
    return list(range(last + 1, last + 1 + count))


def next_ids(_: Store) -> sa.TextClause:
    """allocate_ids' statement on Postgres, for a caller that sends it with others.

    - The sequence is named (next_ids_params), not looked up with pg_get_serial_sequence,
      which scans the catalog: 45 us a call against 14 us.
    - It is cast to regclass once (a materialized CTE), not for each id: by name, each
      nextval cost 3 us, by regclass 0.5 us (a batch of 1,000: 3.0 -> 0.5 ms).
    - The rows come from an array of :count elements, not from generate_series(1, :count).
      A plan for any count guesses 1,000 rows of generate_series but 10 of unnest. With
      generate_series, Postgres found the plan for the count at hand cheaper every time, and
      planned each call anew: 70 us of an identify's backend time, for 48 us of execution."""
    return sa.text(
        "WITH s AS MATERIALIZED (SELECT CAST(:sequence AS regclass) AS seq)"
        " SELECT nextval(s.seq) AS id FROM s, unnest(array_fill(0, ARRAY[CAST(:count AS integer)]))"
    )


def next_ids_params(table: sa.Table, count: int) -> dict[str, Any]:
    return {"sequence": id_sequence(table), "count": count}


def id_sequence(table: sa.Table) -> str:
    """The sequence of table's identity column, as Postgres names it (migrations create
    every id column as an identity; tests/integration/test_schema.py checks the names)."""
    return f"{table.name}_id_seq"


def stored_hashes(session: Session, account_id: int, hashes: Sequence[bytes]) -> set[bytes]:
    """Which of these events are stored already. Read under their identity locks, which every
    writer of them holds: no other transaction stores one of them meanwhile."""
    if not hashes:
        return set()
    return hashes_of(run(session, stored, stored_params(account_id, hashes)))


def stored(db: Store) -> sa.Select:
    """stored_hashes' statement, for a caller that sends it with others."""
    c = signals_table.c
    return sa.select(c.content_hash).where(
        c.account_id == sa.bindparam("account_id"), db.in_(c.content_hash, "hashes")
    )


def stored_params(account_id: int, hashes: Sequence[bytes]) -> dict[str, Any]:
    return {"account_id": account_id, "hashes": list(hashes)}


def hashes_of(rows: Iterable[Any]) -> set[bytes]:
    return {bytes(row.content_hash) for row in rows}


def new_signals_json(new: Sequence[NewSignal]) -> str:
    """receiver_settle's p_new. A payload is sent only where it may become a queue group's
    sample (the group's first new signal by id, as the function picks it): the others would
    only be parsed again."""
    samples: dict[GroupKey, int] = {}
    for s in new:
        if s.draft.match is None:
            key = group_key(s.draft.source, s.draft.event_type, s.draft.event_name)
            samples[key] = min(samples.get(key, s.signal_id), s.signal_id)
    sample_ids = set(samples.values())
    return json_text(
        [
            {
                "id": s.signal_id,
                "lead_id": s.lead_id,
                "occurred_at": s.draft.occurred_at,
                "rule_id": s.draft.match.rule_id if s.draft.match else None,
                "source": s.draft.source,
                "event_type": s.draft.event_type,
                "event_name": s.draft.event_name,
                "payload": s.draft.payload if s.signal_id in sample_ids else None,
            }
            for s in new
        ]
    )


def spans_json(spans: dict[int, tuple[datetime, datetime]]) -> str:
    return json_text(
        [{"lead_id": lead, "earliest": e, "latest": latest} for lead, (e, latest) in spans.items()]
    )


def json_text(value: Any) -> str:
    """value as a JSON parameter's text, written as the store writes JSON."""
    return exact_json.dumps(value, default=_datetime_subclass).decode()


def _datetime_subclass(value: Any) -> str:
    # orjson writes datetimes itself, but not their subclasses (a frozen clock's, in tests).
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


INSERT_SIGNALS = "SELECT id, content_hash FROM receiver_insert_signals(%s, %s::jsonb, %s)"
SETTLE = "SELECT receiver_settle(%s, %s, %s, %s::jsonb, %s::jsonb, %s)"


def widen_lead(
    session: Session, account_id: int, lead_id: int, earliest: datetime, latest: datetime
) -> None:
    c = leads_table.c
    session.execute(
        sa.update(leads_table)
        .where(c.account_id == account_id, c.id == lead_id)
        .values(
            first_seen_at=sa.case((c.first_seen_at > earliest, earliest), else_=c.first_seen_at),
            last_seen_at=sa.case((c.last_seen_at < latest, latest), else_=c.last_seen_at),
        )
    )


def event_columns(draft: Draft) -> dict[str, Any]:
    """A new signal's columns that its event alone decides: all but where it was placed."""
    return {
        "source": draft.source,
        "event_type": draft.event_type,
        "event_name": draft.event_name,
        "anonymous_id": draft.anonymous_id,
        "user_id": draft.user_id,
        "message_id": draft.message_id,
        "content_hash": draft.content_hash,
        "payload": draft.payload,
        "occurred_at": draft.occurred_at,
        **mapping_columns(draft),
    }


def mapping_columns(draft: Draft) -> dict[str, Any]:
    match = draft.match
    if match is None:
        return {"rule_id": None, "mapped_name": None, "score": None, "mapped_fields": None}
    return {
        "rule_id": match.rule_id,
        "mapped_name": match.name,
        "score": match.score,
        "mapped_fields": match.fields,
    }


def period_of(now: datetime) -> tuple[date, datetime]:
    """The calendar month (UTC) holding now: its first day, and when the next one starts."""
    start = now.date().replace(day=1)
    next_year, next_month = (
        (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    )
    return start, datetime(next_year, next_month, 1, tzinfo=now.tzinfo)


def claim_usage(
    session: Session, account_id: int, period_start: date, count: int, limit: int
) -> bool:
    """Add count to the month's counter if the total stays within limit, atomically. The row
    lock this takes is held until commit, so concurrent claims can never overshoot."""
    if count == 0:
        return True
    if count > limit:
        return False
    claimed = session.connection().execute(
        built(session, _usage_claim),
        {"account_id": account_id, "period_start": period_start, "count": count, "limit": limit},
    )
    return claimed.first() is not None


def lock_remaining_usage(session: Session, account_id: int, period_start: date, limit: int) -> int:
    """How much of the limit is left this month, with the counter locked until commit."""
    c = usage_table.c
    session.execute(
        upsert(session, usage_table)
        .values(account_id=account_id, period_start=period_start, used=0)
        .on_conflict_do_nothing(index_elements=[c.account_id, c.period_start])
    )
    used = session.execute(
        sa.select(c.used)
        .where(c.account_id == account_id, c.period_start == period_start)
        .with_for_update()
    ).scalar_one()
    return max(0, limit - used)


def used_this_period(session: Session, account_id: int, period_start: date) -> int:
    c = usage_table.c
    used = session.execute(
        sa.select(c.used).where(c.account_id == account_id, c.period_start == period_start)
    ).scalar()
    return used or 0


def still_cold(session: Session, account_id: int, hashes: set[bytes]) -> set[bytes]:
    rows = run(session, _still_cold, {"account_id": account_id, "hashes": sorted(hashes)})
    return {bytes(row.content_hash) for row in rows}


def _still_cold(db: Store) -> sa.Select:
    return stored(db).where(signals_table.c.is_cold)


def group_key(source: str, event_type: str | None, event_name: str | None) -> GroupKey:
    return (source, event_type or "", event_name or "")


def count_into_queue(
    session: Session, account_id: int, drafts: Sequence[Draft], now: datetime
) -> None:
    """Count newly stored unmapped signals into their groups (in key order: no deadlocks)."""
    groups: dict[GroupKey, list[Any]] = {}
    for draft in drafts:
        key = group_key(draft.source, draft.event_type, draft.event_name)
        if key in groups:
            groups[key][0] += 1
        else:
            groups[key] = [1, draft.payload]
    if not groups:
        return
    rows = [
        {
            "account_id": account_id,
            "source": key[0],
            "event_type": key[1],
            "event_name": key[2],
            "count": count,
            "first_seen_at": now,
            "last_seen_at": now,
            "sample": sample,
        }
        for key, (count, sample) in sorted(groups.items())
    ]
    session.connection().execute(built(session, _count_into_groups), rows)


def _count_into_groups(db: Store) -> Any:
    q = queue_table.c
    statement = db.insert(queue_table)
    return statement.on_conflict_do_update(
        index_elements=[q.account_id, q.source, q.event_type, q.event_name],
        set_={
            "count": q.count + statement.excluded.count,
            "last_seen_at": statement.excluded.last_seen_at,
        },
    )


def take_out_of_queue(session: Session, account_id: int, keys: Iterable[GroupKey]) -> None:
    """Take signals that left the queue (mapped or deleted) out of their groups' counts."""
    q = queue_table.c
    for (source, event_type, event_name), count in sorted(Counter(keys).items()):
        session.execute(
            sa.update(queue_table)
            .where(
                q.account_id == account_id,
                q.source == source,
                q.event_type == event_type,
                q.event_name == event_name,
            )
            .values(count=q.count - count)
        )
