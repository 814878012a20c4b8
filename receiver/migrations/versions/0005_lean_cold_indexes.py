"""Cold signals' identifier indexes hold only the identifiers a signal has.

A cold track of an anonymous visitor has no userId, yet it was written into the userId index
too (and a signed-in one's into the anonymousId index when it had none): one index entry in
seven of every such insert, for rows no lookup asks for. Rehydration looks cold signals up
by `anonymous_id IN (...)` or `user_id IN (...)`, which Postgres knows are never null, so the
narrower indexes serve it as before.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLD_INDEXES = {"ix_signals_cold_anonymous": "anonymous_id", "ix_signals_cold_user": "user_id"}


def upgrade() -> None:
    for name, column in COLD_INDEXES.items():
        where = sa.text(f"is_cold AND {column} IS NOT NULL")
        op.drop_index(name, "signals")
        op.create_index(
            name, "signals", ["account_id", column], postgresql_where=where, sqlite_where=where
        )
