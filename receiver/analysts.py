"""Analyst roles on Postgres: they read the views of sql/views.sql and nothing else, and, with
row-level security, only the accounts analyst_accounts gives them.

The views belong to the role `receiver_views`, which may read the tables behind them; an
analyst may read the views only. Postgres checks a view's tables as its owner, so the
policies on those tables apply to `receiver_views`, while `current_user` inside them is
still the analyst: each policy looks the analyst up in analyst_accounts. The application
owns the tables and is not subject to the policies.

Analysts get the views through the group role `receiver_analyst`. A member may SET ROLE to
it, so the policies show that role itself nothing: it could otherwise shed its scope.

init-db drops and creates the views on every run, so apply_access runs on every init-db of
a database where analyst access was set up once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa

VIEWS_OWNER, ANALYSTS = "receiver_views", "receiver_analyst"
VIEWS = (
    "signal_feed",
    "lead_summary",
    "cold_storage",
    "blocked_identifiers",
    "message_id_conflicts",
    "unlinked_identifiers",
)
# The tables the views read, each with the column that names its account.
VIEW_TABLES = {
    "signals": "account_id",
    "leads": "account_id",
    "identities": "account_id",
    "identity_unlinks": "account_id",
    "accounts": "id",
}
POLICY = "receiver_analyst_accounts"
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class AnalystSetupError(Exception):
    pass


def grant_analyst(connection: sa.Connection, role: str, account_ids: Sequence[int]) -> None:
    """Create the analyst role if need be (NOLOGIN: the operator gives it a password), and
    limit it to account_ids, or to none when empty: then it sees every account."""
    if connection.dialect.name != "postgresql":
        raise AnalystSetupError("analyst roles are Postgres only")
    if not ROLE_NAME.match(role) or role in (VIEWS_OWNER, ANALYSTS):
        raise AnalystSetupError(f"{role!r} is not a role name this command makes")
    for name in (VIEWS_OWNER, ANALYSTS, role):
        _create_role(connection, name)
    connection.exec_driver_sql(f"GRANT {ANALYSTS} TO {role}")
    table = sa.table("analyst_accounts", sa.column("account_id"), sa.column("role_name"))
    connection.execute(sa.delete(table).where(table.c.role_name == role))
    if account_ids:
        connection.execute(
            sa.insert(table), [{"account_id": a, "role_name": role} for a in account_ids]
        )
    apply_access(connection)


def is_set_up(connection: sa.Connection) -> bool:
    return connection.dialect.name == "postgresql" and bool(
        connection.execute(
            sa.text("SELECT 1 FROM pg_policies WHERE tablename = 'signals' AND policyname = :p"),
            {"p": POLICY},
        ).first()
    )


def apply_access(connection: sa.Connection) -> None:
    """Hand the views to receiver_views, give them to receiver_analyst, and (re)create the
    policies. Needs a role that may create roles, or a member of receiver_views."""
    run = connection.exec_driver_sql
    run(f"GRANT {VIEWS_OWNER} TO CURRENT_USER")  # to drop and create the views it will own
    run(f"GRANT USAGE, CREATE ON SCHEMA {_schema(connection)} TO {VIEWS_OWNER}")
    run(f"GRANT SELECT ON {', '.join([*VIEW_TABLES, 'analyst_accounts'])} TO {VIEWS_OWNER}")
    for table, account_column in VIEW_TABLES.items():
        run(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        run(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        run(
            f"CREATE POLICY {POLICY} ON {table} FOR SELECT TO {VIEWS_OWNER} USING ("
            f" current_user <> '{ANALYSTS}' AND ("
            "  NOT EXISTS (SELECT 1 FROM analyst_accounts s WHERE s.role_name = current_user)"
            "  OR EXISTS (SELECT 1 FROM analyst_accounts s WHERE s.role_name = current_user"
            f"   AND s.account_id = {table}.{account_column})))"
        )
    for view in VIEWS:
        run(f"ALTER VIEW {view} OWNER TO {VIEWS_OWNER}")
        run(f"GRANT SELECT ON {view} TO {ANALYSTS}")


def _create_role(connection: sa.Connection, name: str) -> None:
    # Roles belong to the cluster: another database's init-db may be creating the same one.
    connection.exec_driver_sql(
        "DO $$ BEGIN"
        f" IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN"
        f"  CREATE ROLE {name} NOLOGIN;"
        " END IF;"
        " EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;"
        " END $$"
    )


def _schema(connection: sa.Connection) -> str:
    return str(connection.execute(sa.text("SELECT current_schema()")).scalar_one())
