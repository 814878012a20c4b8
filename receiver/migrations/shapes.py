"""Shapes the migrations share. Migrations are history: change nothing here that one of them
uses; add new shapes instead."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def account_id_column(primary_key: bool = False) -> sa.Column:
    return sa.Column(
        "account_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


def create_account_scoped_table(
    name: str, *columns: sa.Column, unique: tuple[str, ...] = ()
) -> None:
    """A table keyed (account_id, id). SQLite only generates ids for a lone INTEGER PRIMARY KEY,
    so there the id is the key and (account_id, id) is a unique constraint instead."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        key = [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.UniqueConstraint("account_id", "id"),
        ]
    else:
        key = [
            sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
            sa.PrimaryKeyConstraint("account_id", "id"),
        ]
    constraints = [sa.UniqueConstraint("account_id", *unique)] if unique else []
    op.create_table(
        name, account_id_column(), *key, *columns, *constraints, sqlite_autoincrement=sqlite
    )
