"""The tables. Every primary and unique key leads with account_id, so the store can be
distributed by account later without a redesign.

The schema itself is created and evolved by the Alembic migrations in receiver/migrations;
tests check that these models and the migrations agree.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

JSONDocument = sa.JSON().with_variant(JSONB(), "postgresql")
# Python None stored as SQL NULL rather than as the JSON value null.
NullableJSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def _id_column() -> Any:
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), primary_key=True
    )


def _account_column(foreign_key: bool = True) -> Any:
    references = [sa.ForeignKey("accounts.id", ondelete="CASCADE")] if foreign_key else []
    return sa.Column(
        "account_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        *references,
        primary_key=True,
    )


class Account(SQLModel, table=True):
    __tablename__ = "accounts"

    id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), primary_key=True
        ),
    )
    name: str
    plan: str
    signal_limit: int = Field(sa_type=sa.BigInteger)
    cold_retention_days: int = 90
    # Bumped by every rule change, so a process can trust its compiled rules while it matches.
    rules_version: int = Field(default=0, sa_type=sa.BigInteger)
    created_at: datetime = Field(sa_type=Timestamp)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"
    __table_args__ = (sa.UniqueConstraint("account_id", "key_hash"),)

    account_id: int = Field(sa_column=_account_column())
    id: int | None = Field(default=None, sa_column=_id_column())
    prefix: str
    key_hash: bytes
    # Needed in clear to verify HMAC signatures; no analyst view exposes this table.
    secret: str | None = None
    created_at: datetime = Field(sa_type=Timestamp)
    revoked_at: datetime | None = Field(default=None, sa_type=Timestamp)
    # Signatures over the whole body only: no first-element signatures (see signature.py).
    whole_body_signatures: bool = Field(
        default=False, sa_column_kwargs={"server_default": sa.false()}
    )
    # 'server', or 'browser': a public key, no secret, honoured only from allowed_origins.
    kind: str = Field(default="server", sa_column_kwargs={"server_default": "server"})
    allowed_origins: list[str] | None = Field(default=None, sa_type=NullableJSON)


class AdminToken(SQLModel, table=True):
    __tablename__ = "admin_tokens"
    __table_args__ = (sa.UniqueConstraint("account_id", "token_hash"),)

    account_id: int = Field(sa_column=_account_column())
    id: int | None = Field(default=None, sa_column=_id_column())
    prefix: str
    token_hash: bytes
    created_at: datetime = Field(sa_type=Timestamp)
    revoked_at: datetime | None = Field(default=None, sa_type=Timestamp)


class UsageCounter(SQLModel, table=True):
    """Raw signals stored per account and calendar month (UTC)."""

    __tablename__ = "usage_counters"

    account_id: int = Field(sa_column=_account_column())
    period_start: date = Field(primary_key=True)
    used: int = Field(default=0, sa_type=sa.BigInteger)


class Lead(SQLModel, table=True):
    __tablename__ = "leads"
    __table_args__ = (sa.UniqueConstraint("account_id", "email"),)

    account_id: int = Field(sa_column=_account_column())
    id: int | None = Field(default=None, sa_column=_id_column())
    email: str
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    group_id: str | None = None
    traits: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDocument)
    # Event time of the identify that last set each trait, so a late one never wins.
    trait_times: dict[str, str] = Field(default_factory=dict, sa_type=JSONDocument)
    first_seen_at: datetime = Field(sa_type=Timestamp)
    last_seen_at: datetime = Field(sa_type=Timestamp)
    created_at: datetime = Field(sa_type=Timestamp)


class Signal(SQLModel, table=True):
    """One row per raw event. A signal is cold while it waits for its visitor to be identified:
    is_cold is true and lead_id is null. Rehydration flips both in one set-based UPDATE."""

    __tablename__ = "signals"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "content_hash"),
        sa.Index(
            "ix_signals_cold_anonymous",
            "account_id",
            "anonymous_id",
            postgresql_where=sa.text("is_cold AND anonymous_id IS NOT NULL"),
            sqlite_where=sa.text("is_cold AND anonymous_id IS NOT NULL"),
        ),
        sa.Index(
            "ix_signals_cold_user",
            "account_id",
            "user_id",
            postgresql_where=sa.text("is_cold AND user_id IS NOT NULL"),
            sqlite_where=sa.text("is_cold AND user_id IS NOT NULL"),
        ),
        sa.Index(
            "ix_signals_lead",
            "account_id",
            "lead_id",
            "occurred_at",
            postgresql_where=sa.text("lead_id IS NOT NULL"),
            sqlite_where=sa.text("lead_id IS NOT NULL"),
        ),
        sa.Index("ix_signals_message", "account_id", "message_id"),
        sa.Index(
            "ix_signals_cold_received",
            "account_id",
            "received_at",
            postgresql_where=sa.text("is_cold"),
            sqlite_where=sa.text("is_cold"),
        ),
        # Backfills walk an account's unmapped signals in id order.
        sa.Index(
            "ix_signals_unmapped",
            "account_id",
            "id",
            postgresql_where=sa.text("rule_id IS NULL"),
            sqlite_where=sa.text("rule_id IS NULL"),
        ),
    )

    # Not a foreign key: see migration 0004.
    account_id: int = Field(sa_column=_account_column(foreign_key=False))
    id: int | None = Field(default=None, sa_column=_id_column())
    source: str
    event_type: str | None = None
    event_name: str | None = None
    anonymous_id: str | None = None
    user_id: str | None = None
    message_id: str | None = None
    content_hash: bytes
    payload: dict[str, Any] = Field(sa_type=JSONDocument)
    occurred_at: datetime = Field(sa_type=Timestamp)
    received_at: datetime = Field(sa_type=Timestamp)
    lead_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    is_cold: bool = False
    # The signal whose identity resolution moved this one onto its lead.
    linked_by_signal_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    linked_at: datetime | None = Field(default=None, sa_type=Timestamp)
    # Set by the mapping rule that matched the signal; null while it waits in the Signal Queue.
    rule_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    mapped_name: str | None = None
    score: int | None = None
    mapped_fields: dict[str, Any] | None = Field(default=None, sa_type=NullableJSON)


class IdentityCluster(SQLModel, table=True):
    """Identifiers seen together (identify with userId and anonymousId, alias). Once any of
    them resolves to a lead, the whole cluster belongs to that lead."""

    __tablename__ = "identity_clusters"
    __table_args__ = (sa.UniqueConstraint("account_id", "lead_id"),)

    account_id: int = Field(sa_column=_account_column())
    id: int | None = Field(default=None, sa_column=_id_column())
    lead_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    created_at: datetime = Field(sa_type=Timestamp)


class Identity(SQLModel, table=True):
    """One identifier (an anonymousId or a userId) and the cluster it belongs to."""

    __tablename__ = "identities"
    __table_args__ = (sa.Index("ix_identities_cluster", "account_id", "cluster_id"),)

    account_id: int = Field(sa_column=_account_column())
    kind: str = Field(primary_key=True)
    value: str = Field(primary_key=True)
    cluster_id: int = Field(sa_type=sa.BigInteger)
    # The distinct leads this identifier has been linked to, oldest first.
    lead_history: list[int] = Field(default_factory=list, sa_type=JSONDocument)
    # Set when it linked to too many leads: it links nobody from then on (merge safety).
    blocked_at: datetime | None = Field(default=None, sa_type=Timestamp)
    linked_by_signal_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    created_at: datetime = Field(sa_type=Timestamp)
    updated_at: datetime = Field(sa_type=Timestamp)


class IdentityUnlink(SQLModel, table=True):
    """An identifier an admin unlinked from a lead: it never joins that lead again
    (CONTRACT section 6)."""

    __tablename__ = "identity_unlinks"

    account_id: int = Field(sa_column=_account_column())
    kind: str = Field(primary_key=True)
    value: str = Field(primary_key=True)
    lead_id: int = Field(sa_type=sa.BigInteger, primary_key=True)
    unlinked_at: datetime = Field(sa_type=Timestamp)
    signals_moved: int = Field(default=0, sa_type=sa.BigInteger)


class LeadEmail(SQLModel, table=True):
    """An email that names a lead besides its own: the email of a lead merged into it. Events
    with it go to that lead, and finding a lead by it finds that lead."""

    __tablename__ = "lead_emails"
    __table_args__ = (sa.Index("ix_lead_emails_lead", "account_id", "lead_id"),)

    account_id: int = Field(sa_column=_account_column())
    email: str = Field(primary_key=True)
    lead_id: int = Field(sa_type=sa.BigInteger)
    created_at: datetime = Field(sa_type=Timestamp)


class Company(SQLModel, table=True):
    """A Segment group, with its traits."""

    __tablename__ = "companies"

    account_id: int = Field(sa_column=_account_column())
    group_id: str = Field(primary_key=True)
    name: str | None = None
    traits: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDocument)
    updated_at: datetime = Field(sa_type=Timestamp)


class Rule(SQLModel, table=True):
    """A mapping rule (docs/reference.md, "Admin API"), with the progress of its backfill."""

    __tablename__ = "rules"

    account_id: int = Field(sa_column=_account_column())
    id: int | None = Field(default=None, sa_column=_id_column())
    name: str
    enabled: bool = True
    priority: int = 0
    source: str | None = None
    event_type: str | None = None
    event_name: str | None = None
    conditions: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONDocument)
    fields: dict[str, str] = Field(default_factory=dict, sa_type=JSONDocument)
    signal: dict[str, Any] | None = Field(default=None, sa_type=JSONDocument)
    version: int = 1
    created_at: datetime = Field(sa_type=Timestamp)
    updated_at: datetime = Field(sa_type=Timestamp)
    backfill_status: str = "pending"
    backfill_cursor: int = Field(default=0, sa_type=sa.BigInteger)
    backfill_scanned: int = Field(default=0, sa_type=sa.BigInteger)
    backfill_mapped: int = Field(default=0, sa_type=sa.BigInteger)
    backfill_heartbeat_at: datetime | None = Field(default=None, sa_type=Timestamp)
    backfill_finished_at: datetime | None = Field(default=None, sa_type=Timestamp)
    backfill_started_at: datetime | None = Field(default=None, sa_type=Timestamp)


class RuleVersion(SQLModel, table=True):
    """Every definition a rule has had, its current one included (CONTRACT section 3)."""

    __tablename__ = "rule_versions"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["account_id", "rule_id"],
            ["rules.account_id", "rules.id"],
            name="fk_rule_versions_rule",
            ondelete="CASCADE",
        ),
    )

    account_id: int = Field(sa_column=_account_column())
    rule_id: int = Field(sa_type=sa.BigInteger, primary_key=True)
    version: int = Field(primary_key=True)
    created_at: datetime = Field(sa_type=Timestamp)
    name: str
    enabled: bool
    priority: int
    source: str | None = None
    event_type: str | None = None
    event_name: str | None = None
    conditions: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONDocument)
    fields: dict[str, str] = Field(default_factory=dict, sa_type=JSONDocument)
    signal: dict[str, Any] | None = Field(default=None, sa_type=JSONDocument)


class QueueGroup(SQLModel, table=True):
    """The Signal Queue, maintained as signals arrive: unmapped signals per source, event
    type and event name (empty string for none), so listing it never scans the signals."""

    __tablename__ = "queue_groups"

    account_id: int = Field(sa_column=_account_column())
    source: str = Field(primary_key=True)
    event_type: str = Field(primary_key=True)
    event_name: str = Field(primary_key=True)
    count: int = Field(default=0, sa_type=sa.BigInteger)
    first_seen_at: datetime = Field(sa_type=Timestamp)
    last_seen_at: datetime = Field(sa_type=Timestamp)
    sample: dict[str, Any] = Field(sa_type=JSONDocument)


class AnalystAccount(SQLModel, table=True):
    """An account an analyst role sees through the views; a role without one sees them all."""

    __tablename__ = "analyst_accounts"

    account_id: int = Field(sa_column=_account_column())
    role_name: str = Field(primary_key=True)


signals_table: sa.Table = Signal.__table__  # type: ignore[attr-defined]
usage_table: sa.Table = UsageCounter.__table__  # type: ignore[attr-defined]
leads_table: sa.Table = Lead.__table__  # type: ignore[attr-defined]
identities_table: sa.Table = Identity.__table__  # type: ignore[attr-defined]
clusters_table: sa.Table = IdentityCluster.__table__  # type: ignore[attr-defined]
companies_table: sa.Table = Company.__table__  # type: ignore[attr-defined]
unlinks_table: sa.Table = IdentityUnlink.__table__  # type: ignore[attr-defined]
lead_emails_table: sa.Table = LeadEmail.__table__  # type: ignore[attr-defined]
rules_table: sa.Table = Rule.__table__  # type: ignore[attr-defined]
rule_versions_table: sa.Table = RuleVersion.__table__  # type: ignore[attr-defined]
queue_table: sa.Table = QueueGroup.__table__  # type: ignore[attr-defined]
accounts_table: sa.Table = Account.__table__  # type: ignore[attr-defined]


class Delivery(SQLModel, table=True):
    """One ingestion request of an account, as answered (GET /admin/deliveries): kept for a
    day, a few thousand per account at most (receiver/deliveries.py prunes as it writes).
    Never a payload, never a key in full: the path holds the key's prefix only."""

    __tablename__ = "deliveries"
    __table_args__ = (sa.Index("ix_deliveries_received_at", "received_at"),)

    account_id: int = Field(sa_column=_account_column())
    id: int | None = Field(default=None, sa_column=_id_column())
    received_at: datetime = Field(sa_type=Timestamp)
    method: str
    path: str
    status: int
    received: int
    stored: int
    duplicates: int
    request_id: str | None = None
    message: str | None = None  # the answer's own, when it was refused
    results: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONDocument)


deliveries_table: sa.Table = Delivery.__table__  # type: ignore[attr-defined]


class ConsoleSession(SQLModel, table=True):
    """An admin signed in to the console (receiver/console/sessions.py): the cookie holds the
    account id and a random session id, of which only the SHA-256 is kept. It lasts while its
    admin token is live and it is used at least every IDLE of console/sessions.py."""

    __tablename__ = "console_sessions"
    __table_args__ = (sa.UniqueConstraint("account_id", "session_hash"),)

    account_id: int = Field(sa_column=_account_column())
    id: int | None = Field(default=None, sa_column=_id_column())
    admin_token_id: int = Field(sa_type=sa.BigInteger)
    session_hash: bytes
    csrf_token: str
    created_at: datetime = Field(sa_type=Timestamp)
    last_seen_at: datetime = Field(sa_type=Timestamp)
    expires_at: datetime = Field(sa_type=Timestamp)


console_sessions_table: sa.Table = ConsoleSession.__table__  # type: ignore[attr-defined]
