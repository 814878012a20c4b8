"""Accounts, keys, usage counters, leads and signals.

Revision ID: 0001
Revises:
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from receiver.migrations.shapes import JSON, TS, account_id_column, create_account_scoped_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(),
            primary_key=True,
        ),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("plan", sa.String, nullable=False),
        sa.Column("signal_limit", sa.BigInteger, nullable=False),
        sa.Column("cold_retention_days", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    create_account_scoped_table(
        "api_keys",
        sa.Column("prefix", sa.String, nullable=False),
        sa.Column("key_hash", sa.LargeBinary, nullable=False),
        sa.Column("secret", sa.String),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
        unique=("key_hash",),
    )
    create_account_scoped_table(
        "admin_tokens",
        sa.Column("prefix", sa.String, nullable=False),
        sa.Column("token_hash", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
        unique=("token_hash",),
    )
    op.create_table(
        "usage_counters",
        account_id_column(primary_key=True),
        sa.Column("period_start", sa.Date, primary_key=True),
        sa.Column("used", sa.BigInteger, nullable=False),
    )
    create_account_scoped_table(
        "leads",
        sa.Column("email", sa.String, nullable=False),
        sa.Column("name", sa.String),
        sa.Column("first_name", sa.String),
        sa.Column("last_name", sa.String),
        sa.Column("company", sa.String),
        sa.Column("title", sa.String),
        sa.Column("traits", JSON, nullable=False),
        sa.Column("trait_times", JSON, nullable=False),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        unique=("email",),
    )
    create_account_scoped_table(
        "signals",
        sa.Column("source", sa.String, nullable=False),
        sa.Column("event_type", sa.String),
        sa.Column("event_name", sa.String),
        sa.Column("anonymous_id", sa.String),
        sa.Column("user_id", sa.String),
        sa.Column("message_id", sa.String),
        sa.Column("content_hash", sa.LargeBinary, nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("lead_id", sa.BigInteger),
        sa.Column("is_cold", sa.Boolean, nullable=False),
        sa.Column("linked_by_signal_id", sa.BigInteger),
        sa.Column("linked_at", TS),
        unique=("content_hash",),
    )
    # Cold rows are the ones rehydration looks up by identifier: keep those indexes small.
    cold: dict[str, Any] = {
        "postgresql_where": sa.text("is_cold"),
        "sqlite_where": sa.text("is_cold"),
    }
    op.create_index("ix_signals_cold_anonymous", "signals", ["account_id", "anonymous_id"], **cold)
    op.create_index("ix_signals_cold_user", "signals", ["account_id", "user_id"], **cold)
    op.create_index("ix_signals_lead", "signals", ["account_id", "lead_id", "occurred_at"])
    op.create_index("ix_signals_message", "signals", ["account_id", "message_id"])
