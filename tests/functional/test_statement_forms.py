"""The two forms of a hot-path statement on Postgres (receiver/statements.py): each list
parameter an array, or, where no list holds more than one value, an equality with that value.
Both find the same rows, and the second is planned once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import orjson
import pytest
from sqlmodel import Session

from receiver import statements, store
from receiver.db import DriverCursor
from receiver.identity import graph, leads
from receiver.models import signals_table
from tests.builders import identify

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def rows_of(session: Session, text: str, params: dict) -> list[tuple]:
    return sorted(tuple(row) for row in DriverCursor(session).execute(text, params))


def test_lists_of_one_value_find_what_arrays_find(client, engine, account):
    for n in (1, 2):
        body = identify(f"p{n}@example.com", anonymousId=f"anon-{n}", userId=f"user-{n}")
        client.post(f"/webhook/{account.api_key}", data=orjson.dumps(body))
    a = account.account_id
    cases = [  # the statement, its parameters, and how many rows they find
        (graph._reach, {"account_id": a, "anonymous": ["anon-1"], "users": []}, 2),
        (graph._reach, {"account_id": a, "anonymous": [], "users": ["user-2"]}, 2),
        (graph._reach, {"account_id": a, "anonymous": ["anon-1"], "users": ["user-2"]}, 4),
        (graph._reach, {"account_id": a, "anonymous": ["anon-1", "anon-2"], "users": []}, 4),
        (graph._reach, {"account_id": a, "anonymous": ["nobody"], "users": []}, 0),
        (leads.by_email_statement, {"account_id": a, "emails": ["p2@example.com"]}, 1),
        (leads.by_email_statement, {"account_id": a, "emails": []}, 0),
        (leads.by_email_statement, {"account_id": a, "emails": ["p1@example.com", "x@y"]}, 1),
    ]
    with Session(engine) as session:
        for build, params, count in cases:
            text, sent = statements.driver_statement(build, params)
            lists = [value for value in params.values() if isinstance(value, list)]
            assert ("= ANY" not in text) == all(len(v) <= 1 for v in lists), params
            found = rows_of(session, text, sent)
            assert len(found) == count, params
            assert found == rows_of(session, statements.driver_text(build), params), params


@contextlib.contextmanager
def prepared(connection, name: str, text: str, types: dict[str, str]) -> Iterator[None]:
    """A driver text prepared as `name`, its parameters numbered in the order of `types`
    (name: SQL type); deallocated on the way out."""
    for number, parameter in enumerate(types, 1):
        text = text.replace(f"%({parameter})s", f"${number}")
    connection.exec_driver_sql(f"PREPARE {name}({', '.join(types.values())}) AS {text}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"DEALLOCATE {name}")


def plan_after_custom_tries(connection, text: str, args: str) -> list[str]:
    """The plan a prepared statement runs on once the server has tried the custom plans it
    tries first: a generic plan names the parameters ($2), a custom one the values."""
    with prepared(connection, "by_email", text, {"account_id": "bigint", "emails": "varchar"}):
        for _ in range(6):
            assert len(connection.exec_driver_sql(f"EXECUTE by_email({args})").all()) == 1
        return [line for (line,) in connection.exec_driver_sql(f"EXPLAIN EXECUTE by_email({args})")]


def test_one_value_forms_are_planned_once(engine, account):
    """On a store with statistics, as a live one has, a single email's lead is looked up on
    a plan made once: after the custom plans the server tries first, the one-value form's
    prepared statement runs on its generic plan. (The array form's gets a plan for each
    call's values on most stores, as bench/README.md shows, but not on every one.)"""
    a = account.account_id
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO leads (account_id, email, traits, trait_times, first_seen_at,"
            " last_seen_at, created_at) SELECT %(a)s, 'lead-' || i || '@example.com',"
            " '{}', '{}', now(), now(), now() FROM generate_series(1, 2000) AS i",
            {"a": a},
        )
        for table in ("leads", "lead_emails", "identity_clusters"):
            connection.exec_driver_sql(f"ANALYZE {table}")
    params = {"account_id": a, "emails": ["lead-7@example.com"]}
    one_value, _ = statements.driver_statement(leads.by_email_statement, params)
    with engine.connect() as connection:
        plan = plan_after_custom_tries(connection, one_value, f"{a}, 'lead-7@example.com'")
    assert any("$2" in line for line in plan), plan


def test_ids_are_taken_on_a_plan_made_once(engine):
    """store.next_ids, prepared: once the server has tried the custom plans it tries first, it
    runs on its generic plan, whatever the count. (Taken from generate_series, the ids were
    planned anew on every call: bench/README.md.)"""
    text = statements.driver_text(store.next_ids)
    sequence = store.id_sequence(signals_table)
    with (
        engine.connect() as connection,
        prepared(connection, "ids", text, {"sequence": "text", "count": "integer"}),
    ):
        for count in (1, 1, 1, 1, 1, 1, 1, 3, 1):
            taken = connection.exec_driver_sql(f"EXECUTE ids('{sequence}', {count})").all()
            assert len(taken) == count
        generic, custom = connection.exec_driver_sql(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'ids'"
        ).one()
    assert generic > 0, (generic, custom)
