"""The delivery log: an account's recent ingestion requests, as answered.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from receiver.migrations.shapes import JSON, TS, create_account_scoped_table

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_account_scoped_table(
        "deliveries",
        sa.Column("received_at", TS, nullable=False),
        sa.Column("method", sa.String, nullable=False),
        sa.Column("path", sa.String, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("received", sa.Integer, nullable=False),
        sa.Column("stored", sa.Integer, nullable=False),
        sa.Column("duplicates", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String),
        sa.Column("message", sa.String),
        sa.Column("results", JSON, nullable=False),
    )
    # The age prune runs over every account at once.
    op.create_index("ix_deliveries_received_at", "deliveries", ["received_at"])
