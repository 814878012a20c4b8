"""Shared fixtures: a fresh Postgres database per run, a fresh account per test.

Postgres comes from TEST_DATABASE_URL (default: the local cluster's `test` database, which is
only used to create and drop a database of this run's own). Without a reachable Postgres the
Postgres tests skip loudly, unless REQUIRE_POSTGRES or CI is set: then they fail.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from receiver import accounts, db, deliveries
from receiver.accounts import NewAccount
from receiver.app import create_app
from receiver.config import Settings
from receiver.rules import worker

DEFAULT_TEST_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# Key secrets are sealed with it, in this process and in the servers and commands it starts.
TEST_SECRET_KEY = os.environ.setdefault(
    "SECRET_KEY", "dGVzdC1rZXktb2YtdGhlLXRlc3Qtc3VpdGUtMzJieXQ="
)
POSTGRES_REQUIRED = bool(os.environ.get("REQUIRE_POSTGRES") or os.environ.get("CI"))


def _libpq(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _postgres_unavailable(base: sa.URL) -> str | None:
    try:
        psycopg.connect(_libpq(base), connect_timeout=3).close()
    except psycopg.Error as error:
        return f"{error}".strip()
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this run's own, migrated to the newest schema."""
    base = sa.make_url(os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL))
    problem = _postgres_unavailable(base)
    if problem is not None:
        message = f"Postgres at {base.render_as_string()} is unreachable: {problem}"
        if POSTGRES_REQUIRED:
            pytest.fail(message + " (REQUIRE_POSTGRES/CI is set)", pytrace=False)
        print(f"\n\n*** SKIPPING POSTGRES TESTS: {message} ***\n", file=sys.stderr)
        pytest.skip(message)
    name = f"receiver_test_{secrets.token_hex(4)}"
    with psycopg.connect(_libpq(base), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(Settings(database_url=url))
    db.upgrade_schema(engine, lambda line: None)
    engine.dispose()
    yield url
    with psycopg.connect(_libpq(base), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'receiver.db'}"
    engine = db.make_engine(Settings(database_url=url))
    db.upgrade_schema(engine, lambda line: None)
    engine.dispose()
    return url


@pytest.fixture(params=["postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The store a test runs on: Postgres, and SQLite too for tests that ask for both with
    @pytest.mark.parametrize("database_url", ["postgres", "sqlite"], indirect=True)."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, secret_key=TEST_SECRET_KEY)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    close_app(app)


def close_app(app: Flask) -> None:
    """Stop what an app runs in the background, then close its connections: a thread still
    holding one when the engine is disposed would leave it to the garbage collector."""
    worker.stop_all(timeout=30)
    deliveries.writer_of(app).close()
    db.engine_of(app).dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def engine(app: Flask) -> sa.Engine:
    return db.engine_of(app)


def make_account(
    engine: sa.Engine,
    signal_limit: int = 10_000,
    secret: str | None = None,
    now: datetime | None = None,
) -> NewAccount:
    return db.run_transaction(
        engine,
        lambda session: accounts.create_account(
            session,
            f"test-{secrets.token_hex(3)}",
            "test",
            signal_limit,
            90,
            now or datetime.now(UTC),
            secret,
        ),
    )


@pytest.fixture
def account(engine: sa.Engine) -> NewAccount:
    """A fresh account: tests share the database and stay apart by account."""
    return make_account(engine)


REPO_ROOT = Path(__file__).resolve().parent.parent
