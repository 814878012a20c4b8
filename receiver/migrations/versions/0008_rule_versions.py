"""Rule history and backfill start: every definition a rule has had, and when its backfill
started.

`rule_versions` holds one row per version of a rule, the current one included, so that
`GET /admin/rules/<id>/versions` lists them and a revert can copy one back. The rules that
exist today get their current definition as their one known version.

Revision ID: 0008
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from receiver.migrations.shapes import JSON, TS, account_id_column

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

DEFINITION = "name, enabled, priority, source, event_type, event_name, conditions, fields, signal"


def upgrade() -> None:
    with op.batch_alter_table("rules") as rules:
        rules.add_column(sa.Column("backfill_started_at", TS))
    op.create_table(
        "rule_versions",
        account_id_column(primary_key=True),
        sa.Column("rule_id", sa.BigInteger, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("source", sa.String),
        sa.Column("event_type", sa.String),
        sa.Column("event_name", sa.String),
        sa.Column("conditions", JSON, nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("signal", JSON),
        sa.ForeignKeyConstraint(
            ["account_id", "rule_id"],
            ["rules.account_id", "rules.id"],
            name="fk_rule_versions_rule",
            ondelete="CASCADE",
        ),
    )
    op.execute(
        f"INSERT INTO rule_versions (account_id, rule_id, version, created_at, {DEFINITION}) "
        f"SELECT account_id, id, version, updated_at, {DEFINITION} FROM rules"
    )
    # A disabled rule has no backfill: the ones left pending for ever say so now.
    op.execute("UPDATE rules SET backfill_status = 'none' WHERE NOT enabled")
