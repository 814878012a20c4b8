"""Signals cost less to insert: no foreign key to accounts, and a lead index without cold rows.

The foreign key's check locked the account's row (FOR KEY SHARE) for every signal stored, a
fifth of the cost of an insert and a row every concurrent request of an account queued on.
Every signal is stored through a key of its account, and accounts are never deleted. Cold
signals have no lead, so the lead index need not hold them.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# SQLite's foreign keys have no names: the batch copy of the table names them by this.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("signals", naming_convention=NAMING) as batch:
            batch.drop_constraint("fk_signals_account_id_accounts", type_="foreignkey")
    else:
        op.drop_constraint("signals_account_id_fkey", "signals", type_="foreignkey")
    op.drop_index("ix_signals_lead", "signals")
    op.create_index(
        "ix_signals_lead",
        "signals",
        ["account_id", "lead_id", "occurred_at"],
        postgresql_where=sa.text("lead_id IS NOT NULL"),
        sqlite_where=sa.text("lead_id IS NOT NULL"),
    )
