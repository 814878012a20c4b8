"""Corrections an admin makes to leads (CONTRACT section 6): identifiers unlinked from a lead,
which never join it again, and the emails of leads merged into another, which name it.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from receiver.migrations.shapes import TS, account_id_column

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_unlinks",
        account_id_column(primary_key=True),
        sa.Column("kind", sa.String, primary_key=True),
        sa.Column("value", sa.String, primary_key=True),
        sa.Column("lead_id", sa.BigInteger, primary_key=True),
        sa.Column("unlinked_at", TS, nullable=False),
        sa.Column("signals_moved", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "lead_emails",
        account_id_column(primary_key=True),
        sa.Column("email", sa.String, primary_key=True),
        sa.Column("lead_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_lead_emails_lead", "lead_emails", ["account_id", "lead_id"])


def downgrade() -> None:
    op.drop_index("ix_lead_emails_lead", "lead_emails")
    op.drop_table("lead_emails")
    op.drop_table("identity_unlinks")
