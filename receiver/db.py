"""The store: one engine per process, a session per request, and the schema upgrade."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from flask import Flask, current_app, g
from sqlalchemy import exc
from sqlmodel import Session

from receiver.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# Deadlocks and serialization failures are resolved by running the transaction again.
RETRYABLE_SQLSTATES = {"40001", "40P01"}
TRANSACTION_ATTEMPTS = 3


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def make_engine(settings: Settings) -> sa.Engine:
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
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout_s,
        # Statement parameters hold payloads and emails: errors and logs must not.
        hide_parameters=True,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    _create_private_file(url.database)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": 10, "check_same_thread": False},
        hide_parameters=True,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
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
            except exc.DBAPIError as error:
                # A pooled connection that died with a database restart is found out by its
                # first statement (no ping before each request): the pool drops every such
                # connection and the transaction runs again on a new one. Were it its commit
                # that failed, the retry finds its events as duplicates: still stored once.
                if attempt == TRANSACTION_ATTEMPTS or not (
                    is_retryable(error) or error.connection_invalidated
                ):
                    raise
                log.warning("transaction retried after %s", error.orig.__class__.__name__)
    raise AssertionError("unreachable")


def run_on_driver(engine: sa.Engine, work: Callable[[Any], T]) -> T:
    """Run work on the driver's own connection (psycopg) in autocommit, each statement a
    transaction of its own: for the hot path, which cannot afford a Session per request.
    The driver's errors come out as SQLAlchemy's, with run_transaction's retries, so
    callers and error pages see one family."""
    dbapi_error = engine.dialect.loaded_dbapi.Error
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        pooled = None
        try:
            pooled = engine.raw_connection()
            connection = pooled.driver_connection
            assert connection is not None
            connection.autocommit = True
            try:
                return work(connection)
            finally:
                _end_autocommit(pooled)
        except dbapi_error as error:
            dead = pooled is not None and engine.dialect.is_disconnect(
                error, pooled.driver_connection, None
            )
            if pooled is not None and dead:
                pooled.invalidate(error)
                # A restarted database killed every pooled connection, not just this one.
                engine.dispose()
            wrapped = exc.DBAPIError.instance(
                None,
                None,
                error,
                dbapi_error,
                hide_parameters=True,
                connection_invalidated=dead,
                dialect=engine.dialect,
            )
            if attempt == TRANSACTION_ATTEMPTS or not (is_retryable(error) or dead):
                raise wrapped from error
            log.warning("transaction retried after %s", error.__class__.__name__)
        finally:
            if pooled is not None:
                pooled.close()  # back to the pool, which rolls back whatever is left open
    raise AssertionError("unreachable")


def _end_autocommit(pooled: Any) -> None:
    """Sessions expect their connections out of autocommit: one that cannot be put back is
    dropped from the pool."""
    try:
        pooled.driver_connection.autocommit = False
    except Exception as error:
        pooled.invalidate(error)


def engine_of(app: Flask) -> sa.Engine:
    return app.extensions["receiver.engine"]


def get_session() -> Session:
    """The request's session, opened on first use and closed when the request ends."""
    if "session" not in g:
        g.session = Session(engine_of(current_app))
    return g.session


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


def upgrade_schema(engine: sa.Engine, echo: Callable[[str], None]) -> None:
    """Create or upgrade the schema to the newest migration, then (re)create the views and
    the express lane's function, which are defined by the code beside them."""
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
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(sql_file("views.sql"))
            echo(
                "views: signal_feed, lead_summary, cold_storage, blocked_identifiers, "
                "message_id_conflicts (re)created"
            )
            connection.exec_driver_sql(sql_file("store_plain.sql"))
            echo("functions: receiver_store_plain (re)created")
        else:
            echo("views: skipped (the analyst views are Postgres only)")


def sql_file(name: str) -> str:
    return resources.files("receiver").joinpath("sql", name).read_text()
