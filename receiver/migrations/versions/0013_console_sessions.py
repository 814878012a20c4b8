"""Console sessions: an admin signed in to /console/ with an admin token.

A session is a row, not a signed cookie: signing out or revoking its admin token ends it at
once, and no signing key is needed. The cookie holds the session's account id and a random
id; only the id's SHA-256 is stored, as for credentials.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from receiver.migrations.shapes import TS, create_account_scoped_table

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_account_scoped_table(
        "console_sessions",
        sa.Column("admin_token_id", sa.BigInteger, nullable=False),
        sa.Column("session_hash", sa.LargeBinary, nullable=False),
        sa.Column("csrf_token", sa.String, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        unique=("session_hash",),
    )


def downgrade() -> None:
    op.drop_table("console_sessions")
