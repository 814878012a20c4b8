"""Browser keys: an API key's kind, and the origins a browser key may be used from.

Every key until now is a server key. A browser key sits in a web page, so it has no secret
and is only honoured from the origins listed with it (CONTRACT section 5).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from receiver.migrations.shapes import JSON

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as api_keys:
        api_keys.add_column(sa.Column("kind", sa.String, nullable=False, server_default="server"))
        api_keys.add_column(sa.Column("allowed_origins", JSON))
