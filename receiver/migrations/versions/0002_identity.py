"""Identity graph (clusters, identities), companies, cold-storage expiry index.

Revision ID: 0002
Revises: 0001
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from receiver.migrations.shapes import JSON, TS, account_id_column, create_account_scoped_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_account_scoped_table(
        "identity_clusters",
        sa.Column("lead_id", sa.BigInteger),
        sa.Column("created_at", TS, nullable=False),
        unique=("lead_id",),
    )
    op.create_table(
        "identities",
        account_id_column(primary_key=True),
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
        account_id_column(primary_key=True),
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
