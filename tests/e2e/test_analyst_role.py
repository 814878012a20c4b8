"""An analyst role made by `init-db --analyst-role`: the views only, one account's rows."""

from __future__ import annotations

import secrets

import orjson
import psycopg
import pytest
import requests

from receiver.analysts import VIEWS
from tests.builders import track
from tests.e2e.conftest import cli, create_account


def as_role(database_url, role, sql, then_role=None):
    """Rows of sql run as role (and then as then_role, set by role), or Postgres's error."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"SET ROLE {role}")
        try:
            if then_role:
                connection.execute(f"SET ROLE {then_role}")
            return connection.execute(sql).fetchall()
        except psycopg.Error as error:
            return error


@pytest.fixture
def analyst(postgres_url):
    role = f"analyst_{secrets.token_hex(4)}"
    yield role
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DELETE FROM analyst_accounts WHERE role_name = %s", (role,))
        connection.execute(f"DROP OWNED BY {role}")
        connection.execute(f"DROP ROLE {role}")


def test_an_analyst_reads_the_views_of_its_account_only(server, analyst):
    mine, theirs = create_account(server.database_url), create_account(server.database_url)
    for account in (mine, theirs):
        url = server.url + account["webhook_path"]
        assert requests.post(url, data=orjson.dumps(track()), timeout=10).status_code == 200
    output = cli(
        server.database_url,
        "init-db",
        "--analyst-role",
        analyst,
        "--analyst-account",
        str(mine["account_id"]),
    ).stdout
    assert f"analysts: {analyst} reads the views" in output
    seen = as_role(server.database_url, analyst, "SELECT DISTINCT account_id FROM signal_feed")
    assert seen == [(mine["account_id"],)]
    for view in VIEWS:
        rows = as_role(server.database_url, analyst, f"SELECT account_id FROM {view}")
        assert not isinstance(rows, Exception), rows
        assert {row[0] for row in rows} <= {mine["account_id"]}, view
    for table in ("api_keys", "admin_tokens", "signals", "accounts", "analyst_accounts"):
        refused = as_role(server.database_url, analyst, f"SELECT * FROM {table}")
        assert isinstance(refused, psycopg.errors.InsufficientPrivilege), table
    # The group role it may SET ROLE to sees nothing: it cannot shed its scope so.
    group = as_role(
        server.database_url, analyst, "SELECT count(*) FROM signal_feed", "receiver_analyst"
    )
    assert group == [(0,)]


def test_an_analyst_without_accounts_sees_them_all_and_keeps_access_after_init_db(server, analyst):
    mine, theirs = create_account(server.database_url), create_account(server.database_url)
    for account in (mine, theirs):
        url = server.url + account["webhook_path"]
        assert requests.post(url, data=orjson.dumps(track()), timeout=10).status_code == 200
    cli(server.database_url, "init-db", "--analyst-role", analyst)
    assert "analysts: access to the views renewed" in cli(server.database_url, "init-db").stdout
    seen = as_role(server.database_url, analyst, "SELECT DISTINCT account_id FROM signal_feed")
    assert {mine["account_id"], theirs["account_id"]} <= {row[0] for row in seen}
