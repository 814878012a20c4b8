"""The store: one engine per process, a session per request, and the schema upgrade."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from flask import Flask, current_app, g
from psycopg.rows import namedtuple_row
from sqlalchemy import exc
from sqlmodel import Session

from receiver import exact_json, metrics
from receiver.config import Settings
from receiver.errors import StoreUnavailable
from receiver.scoring import check_window

log = logging.getLogger(__name__)
T = TypeVar("T")

# Deadlocks and serialization failures are resolved by running the transaction again.
RETRYABLE_SQLSTATES = {"40001", "40P01"}
TRANSACTION_ATTEMPTS = 5


class StartOver(Exception):
    """Raised by a transaction's work that lost a race it can only win by starting again
    (identity/locks.py): run_transaction rolls back and runs the work again."""


class StoreBusy(StoreUnavailable):
    message = (
        "The store is busy with this visitor's events; nothing in this request was stored. "
        "Retry later."
    )


def make_engine(settings: Settings, pool_size: int | None = None) -> sa.Engine:
    """The store's engine; pool_size for a pool of a background worker's own."""
    pool_size = settings.db_pool_size if pool_size is None else pool_size
    url = sa.make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    options = (
        f"-c statement_timeout={settings.db_statement_timeout_ms}"
        f" -c lock_timeout={settings.db_statement_timeout_ms}"
        " -c idle_in_transaction_session_timeout=30000"
    )
    return sa.create_engine(
        url,
        connect_args={"connect_timeout": settings.db_connect_timeout_s, "options": options},
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=settings.db_pool_timeout_s,
        # Statement parameters hold payloads and emails: errors and logs must not.
        hide_parameters=True,
        json_serializer=exact_json.dumps_text,
        json_deserializer=exact_json.loads,
    )


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    _create_private_file(url.database)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": 10, "check_same_thread": False},
        hide_parameters=True,
        json_serializer=exact_json.dumps_text,
        json_deserializer=exact_json.loads,
    )

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself: pysqlite's own would be deferred.
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    @sa.event.listens_for(engine, "begin")
    def _begin_immediate(connection: sa.Connection) -> None:
        # Take the write lock up front, so two writers queue instead of failing on upgrade.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _create_private_file(path: str | None) -> None:
    """The database file is created readable by its owner only: it holds customer data. SQLite
    gives its -wal and -shm files the database's mode."""
    if path and path != ":memory:" and not path.startswith("file:"):
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def is_retryable(error: Exception) -> bool:
    """For SQLAlchemy's errors and the driver's own."""
    return getattr(getattr(error, "orig", error), "sqlstate", None) in RETRYABLE_SQLSTATES


def run_transaction(engine: sa.Engine, work: Callable[[Session], T]) -> T:
    """Run work in one transaction, committed before this returns; retried on deadlock."""
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        with Session(engine) as session:
            try:
                with session.begin():
                    return work(session)
            except StartOver as error:
                if attempt == TRANSACTION_ATTEMPTS:
                    raise StoreBusy() from error
                log.info("transaction started over: %s", error.__class__.__name__)
                time.sleep(random.uniform(0, 0.005 * attempt))
            except exc.DBAPIError as error:
                # A pooled connection that died with a database restart is found out by its
                # first statement (no ping before each request): the pool drops every such
                # connection and the transaction runs again on a new one. Were it its commit
                # that failed, the retry finds its events as duplicates: still stored once.
                if attempt == TRANSACTION_ATTEMPTS or not (
                    is_retryable(error) or error.connection_invalidated
                ):
                    raise
                metrics.count_retry(error)
                log.warning("transaction retried after %s", error.orig.__class__.__name__)
    raise AssertionError("unreachable")


def run_on_driver(engine: sa.Engine, work: Callable[[Any], T]) -> T:
    """Run work on the driver's own connection (psycopg), for the hot path, which sends its
    statements in pipelines a Session cannot. The connection is in autocommit: work sends
    BEGIN and COMMIT itself, as statements of its pipelines (the driver's own BEGIN and
    commit() would each wait for their answer, two more round trips). Whatever work leaves
    open is rolled back. The driver's errors come out as SQLAlchemy's, with
    run_transaction's retries, so callers and error pages see one family."""
    dbapi_error = engine.dialect.loaded_dbapi.Error
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        pooled = None
        try:
            pooled = engine.raw_connection()
            connection = pooled.driver_connection
            assert connection is not None
            connection.autocommit = True
            return work(connection)
        except StartOver as error:
            if attempt == TRANSACTION_ATTEMPTS:
                raise StoreBusy() from error
            log.info("transaction started over: %s", error.__class__.__name__)
        except dbapi_error as error:
            dead = pooled is not None and engine.dialect.is_disconnect(
                error, pooled.driver_connection, None
            )
            if pooled is not None and dead:
                pooled.invalidate(error)
                # A restarted database killed every pooled connection, not just this one.
                engine.dispose()
            wrapped = _as_sqlalchemy_error(engine.dialect, error, dead)
            if attempt == TRANSACTION_ATTEMPTS or not (is_retryable(error) or dead):
                raise wrapped from error
            log.warning("transaction retried after %s", error.__class__.__name__)
        finally:
            if pooled is not None:
                _out_of_autocommit(pooled)
                pooled.close()  # back to the pool
    raise AssertionError("unreachable")


def _out_of_autocommit(pooled: Any) -> None:
    """The connection as the pool hands it out: no transaction open, not in autocommit. One
    that cannot be brought back so (it died) is dropped."""
    connection = pooled.driver_connection
    if connection is None:
        return  # invalidated already: the pool drops it
    try:
        if connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            connection.rollback()
        connection.autocommit = False
    except psycopg.Error:
        pooled.invalidate()


def _as_sqlalchemy_error(dialect: sa.Dialect, error: Exception, dead: bool) -> exc.StatementError:
    return exc.DBAPIError.instance(
        None,
        None,
        error,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=dead,
        dialect=dialect,
    )


class DriverCursor:
    """A cursor of the driver (psycopg) on the session's connection, rows as named tuples: for
    the hot path's statements, which then skip SQLAlchemy's work on each call. Its errors come
    out as SQLAlchemy's, as the session's own do (run_transaction retries them)."""

    def __init__(self, session: Session) -> None:
        self._connection, self._driver = _connections_of(session)
        self._cursor = self._driver.cursor(row_factory=namedtuple_row)

    def execute(self, text: str, params: Any = None) -> Any:
        with self._errors_translated():
            return self._cursor.execute(text, params)

    def execute_together(self, statements: Sequence[tuple[str, Any]]) -> list[list[Any]]:
        """The statements sent in one round trip (psycopg's pipeline), in order; the rows of
        each."""
        with self._errors_translated():
            with self._driver.pipeline():
                cursors = [self._driver.cursor(row_factory=namedtuple_row) for _ in statements]
                for cursor, (text, params) in zip(cursors, statements, strict=True):
                    cursor.execute(text, params)
            return [cursor.fetchall() if cursor.description else [] for cursor in cursors]

    @contextmanager
    def _errors_translated(self) -> Iterator[None]:
        dialect = self._connection.dialect
        try:
            yield
        except dialect.loaded_dbapi.Error as error:
            dead = dialect.is_disconnect(error, self._driver, self._cursor)
            if dead:
                self._connection.invalidate(error)
            raise _as_sqlalchemy_error(dialect, error, dead) from error


def _connections_of(session: Session) -> tuple[sa.Connection, Any]:
    """The session's connection and the driver's under it, for its transaction. Kept with
    the transaction: session.connection() walks SQLAlchemy's transaction states on every
    call, and an identify's transaction asks about ten times."""
    transaction = session.get_transaction()
    known = session.info.get(_DRIVER)
    if known is not None and transaction is not None and known[0] is transaction:
        return known[1], known[2]
    connection = session.connection()
    driver = connection.connection.driver_connection
    assert driver is not None  # a connection checked out of the pool
    session.info[_DRIVER] = (session.get_transaction(), connection, driver)
    return connection, driver


_DRIVER = "receiver.driver_connection"


def engine_of(app: Flask) -> sa.Engine:
    return app.extensions["receiver.engine"]


def get_session() -> Session:
    """The request's session, opened on first use and closed when the request ends."""
    if "session" not in g:
        g.session = Session(engine_of(current_app))
    return g.session


def run_view_transaction(work: Callable[[Session], T]) -> T:
    """run_transaction for a view whose request session has read already (the admin token):
    that session's transaction ends first, since on SQLite it holds the one write lock."""
    if "session" in g:
        g.session.commit()
    return run_transaction(engine_of(current_app), work)


def _close_session(_error: BaseException | None = None) -> None:
    session = g.pop("session", None)
    if session is not None:
        session.close()


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["receiver.engine"] = make_engine(settings)
    app.teardown_appcontext(_close_session)


@contextmanager
def _migration_lock(connection: sa.Connection) -> Iterator[None]:
    # Two init-db runs at once (say, two deploys) must not both create the tables.
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(7243001)"))
    yield


def upgrade_schema(
    engine: sa.Engine, echo: Callable[[str], None], score_window_days: int = 90
) -> None:
    """Create or upgrade the schema to the newest migration, then (re)create the views and
    the store's functions, which are defined by the code beside them."""
    config = Config()
    config.set_main_option("script_location", "receiver:migrations")

    def report(*, ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        echo(f"schema: applied {step.up_revision_id}: {step.up_revision.doc}")

    with engine.begin() as connection, _migration_lock(connection):
        config.attributes["connection"] = connection
        config.attributes["on_version_apply"] = report
        command.upgrade(config, "head")
        revision = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        echo(f"schema: at revision {revision}")
        views = (
            "views: signal_feed, lead_summary, cold_storage, blocked_identifiers, "
            "message_id_conflicts, unlinked_identifiers (re)created"
        )
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(sql_file("views.sql"))
            connection.exec_driver_sql(score_window_sql(score_window_days))
            echo(views)
            echo(f"views: score_recent fades over {score_window_days} days (SCORE_WINDOW_DAYS)")
            connection.exec_driver_sql(sql_file("store.sql"))
            echo(
                "functions: receiver_begin, receiver_insert_signals, receiver_settle, "
                "receiver_settle_columns, receiver_store_placed (re)created"
            )
        else:
            for statement in sqlite_statements(sqlite_views_sql(score_window_days)):
                connection.exec_driver_sql(statement)
            echo(views)
            echo(f"views: score_recent fades over {score_window_days} days (SCORE_WINDOW_DAYS)")


def score_window_sql(days: int) -> str:
    """The window of lead_summary.score_recent: views.sql's function, with the setting."""
    return (
        "CREATE OR REPLACE FUNCTION receiver_score_window_days() RETURNS double precision "
        f"LANGUAGE sql STABLE AS $$ SELECT {check_window(days)}::double precision $$"
    )


# The window as views_sqlite.sql writes it; SQLite views cannot call a function of ours.
SQLITE_SCORE_WINDOW = "90.0 /* SCORE_WINDOW_DAYS */"


def sqlite_views_sql(days: int) -> str:
    """views_sqlite.sql with the window of lead_summary.score_recent set to the setting."""
    script = sql_file("views_sqlite.sql")
    if SQLITE_SCORE_WINDOW not in script:
        raise RuntimeError("views_sqlite.sql has lost the marked window of score_recent")
    return script.replace(SQLITE_SCORE_WINDOW, f"{float(check_window(days))}")


def sql_file(name: str) -> str:
    return resources.files("receiver").joinpath("sql", name).read_text()


def sqlite_statements(script: str) -> Iterator[str]:
    """The statements of a script one by one: sqlite3 runs one per call, and its
    executescript would commit the migration's transaction half-way."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement
            statement = ""
