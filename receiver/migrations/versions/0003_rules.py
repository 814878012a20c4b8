"""Mapping rules, the Signal Queue summary, and the mapping columns of signals.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from receiver.migrations.shapes import JSON, TS, account_id_column, create_account_scoped_table

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_account_scoped_table(
        "rules",
        sa.Column("name", sa.String, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("source", sa.String),
        sa.Column("event_type", sa.String),
        sa.Column("event_name", sa.String),
        sa.Column("conditions", JSON, nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("signal", JSON),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("backfill_status", sa.String, nullable=False),
        sa.Column("backfill_cursor", sa.BigInteger, nullable=False),
        sa.Column("backfill_scanned", sa.BigInteger, nullable=False),
        sa.Column("backfill_mapped", sa.BigInteger, nullable=False),
        sa.Column("backfill_heartbeat_at", TS),
        sa.Column("backfill_finished_at", TS),
    )
    op.create_table(
        "queue_groups",
        account_id_column(primary_key=True),
        sa.Column("source", sa.String, primary_key=True),
        sa.Column("event_type", sa.String, primary_key=True),
        sa.Column("event_name", sa.String, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("sample", JSON, nullable=False),
    )
    with op.batch_alter_table("accounts") as accounts:
        accounts.add_column(
            sa.Column("rules_version", sa.BigInteger, nullable=False, server_default="0")
        )
    with op.batch_alter_table("signals") as signals:
        signals.add_column(sa.Column("rule_id", sa.BigInteger))
        signals.add_column(sa.Column("mapped_name", sa.String))
        signals.add_column(sa.Column("score", sa.Integer))
        signals.add_column(sa.Column("mapped_fields", JSON))
    # Backfill walks the unmapped signals of an account in id order.
    op.create_index(
        "ix_signals_unmapped",
        "signals",
        ["account_id", "id"],
        postgresql_where=sa.text("rule_id IS NULL"),
        sqlite_where=sa.text("rule_id IS NULL"),
    )
    # Existing signals join the Signal Queue summary.
    op.execute("""
        INSERT INTO queue_groups (account_id, source, event_type, event_name, count,
                                  first_seen_at, last_seen_at, sample)
        SELECT g.account_id, g.source, g.event_type, g.event_name, g.n, g.first_seen,
               g.last_seen, p.payload
        FROM (
            SELECT account_id, source, COALESCE(event_type, '') AS event_type,
                   COALESCE(event_name, '') AS event_name, count(*) AS n,
                   min(received_at) AS first_seen, max(received_at) AS last_seen,
                   min(id) AS sample_id
            FROM signals
            GROUP BY 1, 2, 3, 4
        ) g
        JOIN signals p ON p.account_id = g.account_id AND p.id = g.sample_id
    """)
