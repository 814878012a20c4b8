"""Which accounts each analyst role sees through the views (row-level security).

`receiver init-db --analyst-role NAME --analyst-account ID` fills it; a role without a row
sees every account. Admin tokens and sealed key secrets need no new column: tokens already
carry revoked_at, and a sealed secret is text like a clear one.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from receiver.migrations.shapes import account_id_column

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analyst_accounts",
        account_id_column(primary_key=True),
        sa.Column("role_name", sa.String, primary_key=True),
    )
