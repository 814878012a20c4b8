"""Statements of the hot path, built once per store and run on the driver.

A statement is built by a function of `Store` (what the two stores differ in: how a list
parameter is written). On Postgres it is sent as the driver's text, compiled once in each of
two forms: each list one array parameter, so that its text is the same whatever the list's
length; or, where no list holds more than one value (a single event's reads), each list an
equality with its one value (with NULL for an empty list, which matches nothing as an empty
array does). On SQLite it is executed as SQLAlchemy builds it.

On Postgres the driver prepares a statement once it is used often, and the server then
chooses for itself whether to plan it once or for each call's values: no statement here asks
for either. It mostly plans `= ANY` of an array for each call's values, since a plan for any
array assumes ten values and costs more; it plans an equality once. Hence the second form: an
identify's graph read 235 -> 48 us of backend CPU a call, its email read 140 -> 38 us
(bench/README.md, "one value, one plan"). Forcing a plan per call cost a batch of 100 more
than its reads ("one plan per statement"); forcing one plan for arrays made an identify's
graph and email reads scan small stores ("the store functions without re-planning").
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlmodel import Session

from receiver.db import DriverCursor


class Store:
    """What a statement built for one store may differ in."""

    def __init__(self, dialect: str, one_value: bool = False) -> None:
        self.postgresql = dialect == "postgresql"
        # The dialect's INSERT, for ON CONFLICT clauses.
        self.insert = postgresql.insert if self.postgresql else sqlite.insert
        # Postgres: every list parameter holds one value at most, sent as that value.
        self.one_value = one_value and self.postgresql
        self.lists: list[str] = []  # the list parameters' names, as in_ meets them

    def in_(self, column: Any, name: str) -> Any:
        """column IN the list parameter `name`: on Postgres `= ANY` of one array, so that the
        statement's text is the same whatever the list's length, and is prepared once; or,
        built with one_value, `=` its one value."""
        if not self.postgresql:
            return column.in_(sa.bindparam(name, expanding=True))
        self.lists.append(name)
        if self.one_value:
            return column == sa.bindparam(name, type_=column.type)
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))


def run(session: Session, build: Callable[[Store], Any], params: dict[str, Any]) -> Any:
    """Execute the statement build makes for the session's store (built once per store); rows
    with their columns as attributes. On Postgres as the driver's text (driver_statement),
    without SQLAlchemy's compile and cache lookups on every call."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return connection.execute(built(session, build), params)
    return DriverCursor(session).execute(*driver_statement(build, params))


def built(session: Session, build: Callable[[Store], Any]) -> Any:
    """The statement build makes for the session's store, built once per store: the hot path
    then spends no time constructing SQL expressions."""
    return _for_store(session.get_bind().dialect.name, build)


def run_together(
    session: Session,
    statements: Sequence[tuple[Callable[[Store], Any], dict[str, Any]]],
    first: tuple[str, dict[str, Any]] | None = None,
) -> list[list[Any]]:
    """The rows of each statement (as run makes them): on Postgres all sent in one round
    trip, so none may depend on another's rows; after `first`, a driver text with its
    parameters, whose rows are not returned (Postgres only)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        if first is not None:
            raise ValueError("a driver text runs on Postgres only")
        return [list(run(session, build, params)) for build, params in statements]
    texts = [driver_statement(build, params) for build, params in statements]
    if first is None:
        return DriverCursor(session).execute_together(texts)
    return DriverCursor(session).execute_together([first, *texts])[1:]


def driver_statement(
    build: Callable[[Store], Any], params: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """build's text for Postgres and its parameters: with each list's one value in place of
    the list where no list holds more."""
    text, lists = _compiled(build, one_value=False)
    if not lists or any(len(params[name]) > 1 for name in lists):
        return text, params
    one = {name: params[name][0] if params[name] else None for name in lists}
    return _compiled(build, one_value=True)[0], {**params, **one}


def driver_text(build: Callable[[Store], Any]) -> str:
    """The text of build's statement for Postgres as psycopg takes it (%(name)s parameters),
    each list an array."""
    return _compiled(build, one_value=False)[0]


@functools.cache
def _compiled(build: Callable[[Store], Any], one_value: bool) -> tuple[str, tuple[str, ...]]:
    """build's text for Postgres in one of its two forms, and the names of its list
    parameters. Its constants must be literals (`constant`): a constant sent as a parameter
    would hide from the planner which index a prepared statement's generic plan can use."""
    store = Store("postgresql", one_value)
    compiled = build(store).compile(dialect=postgresql_psycopg.dialect())
    constants = [name for name, value in compiled.params.items() if value is not None]
    if constants:
        raise ValueError(f"constants sent as parameters: {constants}")
    return str(compiled), tuple(dict.fromkeys(store.lists))


def constant(value: str) -> Any:
    """A string constant written into the statement's text."""
    if "'" in value:
        raise ValueError(value)
    return sa.literal_column(f"'{value}'", sa.String)


@functools.cache
def _for_store(dialect: str, build: Callable[[Store], Any]) -> Any:
    return build(Store(dialect))
