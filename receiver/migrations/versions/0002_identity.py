"""Identity graph (clusters, identities), companies, cold-storage expiry index.

Revision ID: 0002
Revises: 0001
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
ACCOUNT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
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
    op.create_table(
        "identity_clusters",
        sa.Column(
            "account_id",
            ACCOUNT_ID,
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        *key,
        sa.Column("lead_id", sa.BigInteger),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("account_id", "lead_id"),
        sqlite_autoincrement=sqlite,
    )
    op.create_table(
        "identities",
        sa.Column(
            "account_id",
            ACCOUNT_ID,
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String, primary_key=True),
        sa.Column("value", sa.String, primary_key=True),
        sa.Column("cluster_id", sa.BigInteger, nullable=False),
        sa.Column("lead_history", JSON, nullable=False),
        sa.Column("blocked_at", TS),
        sa.Column("linked_by_signal_id", sa.BigInteger),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_identities_cluster", "identities", ["account_id", "cluster_id"])
    op.create_table(
        "companies",
        sa.Column(
            "account_id",
            ACCOUNT_ID,
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("group_id", sa.String, primary_key=True),
        sa.Column("name", sa.String),
        sa.Column("traits", JSON, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    with op.batch_alter_table("leads") as leads:
        leads.add_column(sa.Column("group_id", sa.String))
    cold: dict[str, Any] = {
        "postgresql_where": sa.text("is_cold"),
        "sqlite_where": sa.text("is_cold"),
    }
    op.create_index("ix_signals_cold_received", "signals", ["account_id", "received_at"], **cold)
