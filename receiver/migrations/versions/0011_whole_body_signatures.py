"""A key's choice to take signatures over the whole body only.

Segment's Webhooks destination signs only the first element of a batch, so a body once
signed stays valid as the first element of any array: a key whose senders do not batch can
refuse that mode altogether.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as api_keys:
        api_keys.add_column(
            sa.Column(
                "whole_body_signatures", sa.Boolean, nullable=False, server_default=sa.false()
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as api_keys:
        api_keys.drop_column("whole_body_signatures")
