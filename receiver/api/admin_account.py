"""/admin/usage, /admin/keys, and what admins should know about: messageId conflicts and
identifiers blocked by merge safety."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Response
from flask_smorest import Blueprint
from sqlmodel import col, select

from receiver.accounts import create_api_key
from receiver.api.admin_auth import account_id, require_admin
from receiver.api.json_body import require_json_body
from receiver.api.schemas import (
    ColdStorageSchema,
    ConflictSchema,
    IdentitySchema,
    KeySchema,
    NewKeyArgsSchema,
    NewKeySchema,
    UsageSchema,
)
from receiver.browser import BROWSER
from receiver.db import get_session
from receiver.errors import NotFound
from receiver.models import Account, ApiKey, identities_table, signals_table
from receiver.store import period_of, used_this_period

blp = Blueprint(
    "account",
    __name__,
    url_prefix="/admin",
    description="Plan usage, API keys, and reports for admins.",
)
blp.before_request(require_admin)
blp.before_request(require_json_body)


@blp.route("/usage", methods=["GET"])
@blp.response(200, UsageSchema)
def usage() -> dict[str, Any]:
    """Raw signals stored this calendar month (UTC) against the plan's limit."""
    session = get_session()
    account = session.get(Account, account_id())
    assert account is not None
    now = datetime.now(UTC)
    start, end = period_of(now)
    return {
        "plan": account.plan,
        "limit": account.signal_limit,
        "used": used_this_period(session, account_id(), start),
        "period_start": datetime.combine(start, time(), tzinfo=UTC),
        "period_end": end,
    }


@blp.route("/keys", methods=["GET"])
@blp.response(200, KeySchema(many=True))
def list_keys() -> list[dict[str, Any]]:
    keys = get_session().exec(
        select(ApiKey).where(ApiKey.account_id == account_id()).order_by(col(ApiKey.id))
    )
    return [_key(key) for key in keys]


@blp.route("/keys", methods=["POST"])
@blp.arguments(NewKeyArgsSchema)
@blp.response(201, NewKeySchema)
def create_key(args: dict[str, Any]) -> dict[str, Any]:
    """A new API key, with a secret if given; the key is shown once. Keep two keys with
    secrets active while rotating, then revoke the old one. `{"kind": "browser",
    "allowed_origins": [...]}` makes a browser key, for Analytics.js in a web page."""
    session = get_session()
    origins = args["allowed_origins"] if args["kind"] == BROWSER else None
    credential = create_api_key(
        session,
        account_id(),
        datetime.now(UTC),
        args["secret"],
        origins,
        whole_body_signatures=args["whole_body_signatures"],
    )
    stored = session.exec(
        select(ApiKey).where(
            ApiKey.account_id == account_id(), ApiKey.key_hash == credential.digest
        )
    ).one()
    session.commit()
    return {
        **_key(stored),
        "api_key": credential.text,
        "webhook_path": f"/webhook/{credential.text}",
    }


@blp.route("/keys/<id:key_id>", methods=["DELETE"])
@blp.response(204)
def revoke_key(key_id: int) -> Response:
    session = get_session()
    key = session.exec(
        select(ApiKey).where(ApiKey.account_id == account_id(), ApiKey.id == key_id)
    ).first()
    if key is None:
        raise NotFound("No such key.")
    key.revoked_at = key.revoked_at or datetime.now(UTC)
    session.commit()
    return Response(status=204)


@blp.route("/conflicts", methods=["GET"])
@blp.response(200, ConflictSchema(many=True))
def conflicts() -> list[Any]:
    """messageIds that arrived with different content (every version is stored)."""
    s = signals_table.c
    return list(
        get_session()
        .execute(
            sa.select(
                s.message_id,
                sa.func.count().label("versions"),
                sa.func.min(s.received_at).label("first_received_at"),
                sa.func.max(s.received_at).label("last_received_at"),
            )
            .where(s.account_id == account_id(), s.message_id.is_not(None))
            .group_by(s.message_id)
            .having(sa.func.count() > 1)
            .order_by(sa.func.max(s.received_at).desc())
            .limit(500)
        )
        .mappings()
    )


@blp.route("/identity-reports", methods=["GET"])
@blp.response(200, IdentitySchema(many=True))
def identity_reports() -> list[Any]:
    """Identifiers that linked to too many leads and no longer link anyone."""
    i = identities_table.c
    return list(
        get_session()
        .execute(
            sa.select(i.kind, i.value, i.blocked_at)
            .where(i.account_id == account_id(), i.blocked_at.is_not(None))
            .order_by(i.blocked_at.desc())
            .limit(500)
        )
        .mappings()
    )


@blp.route("/cold-storage", methods=["GET"])
@blp.response(200, ColdStorageSchema)
def cold_storage() -> dict[str, Any]:
    """How many signals wait in cold storage for their visitor to be identified, and when the
    oldest of them expires (receipt time plus the account's retention)."""
    session = get_session()
    account = session.get(Account, account_id())
    assert account is not None
    s = signals_table.c
    count, oldest = session.execute(
        sa.select(sa.func.count(), sa.func.min(s.received_at)).where(
            s.account_id == account_id(), s.is_cold
        )
    ).one()
    expires = oldest + timedelta(days=account.cold_retention_days) if oldest else None
    return {
        "cold_signals": count,
        "retention_days": account.cold_retention_days,
        "oldest_received_at": oldest,
        "next_expiry_at": expires,
    }


def _key(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "prefix": key.prefix,
        "kind": key.kind,
        "allowed_origins": key.allowed_origins,
        "has_secret": key.secret is not None,
        "whole_body_signatures": key.whole_body_signatures,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }
