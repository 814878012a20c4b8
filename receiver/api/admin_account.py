"""/admin/usage, /admin/keys, and what admins should know about: messageId conflicts and
identifiers blocked by merge safety."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Response
from flask_smorest import Blueprint

from receiver import keys
from receiver.api.admin_auth import account_id, require_admin
from receiver.api.json_body import require_json_body
from receiver.browser import BROWSER
from receiver.db import get_session
from receiver.errors import NotFound
from receiver.models import Account, identities_table, signals_table
from receiver.schemas import (
    ColdStorageSchema,
    ConflictSchema,
    IdentitySchema,
    KeySchema,
    NewKeyArgsSchema,
    NewKeySchema,
    UsageSchema,
)

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
    return keys.usage(get_session(), account_id(), datetime.now(UTC))


@blp.route("/keys", methods=["GET"])
@blp.response(200, KeySchema(many=True))
def list_keys() -> list[dict[str, Any]]:
    return keys.list_keys(get_session(), account_id())


@blp.route("/keys", methods=["POST"])
@blp.arguments(NewKeyArgsSchema)
@blp.response(201, NewKeySchema)
def create_key(args: dict[str, Any]) -> dict[str, Any]:
    """A new API key, with a secret if given; the key is shown once. Keep two keys with
    secrets active while rotating, then revoke the old one. `{"kind": "browser",
    "allowed_origins": [...]}` makes a browser key, for Analytics.js in a web page."""
    session = get_session()
    origins = args["allowed_origins"] if args["kind"] == BROWSER else None
    created = keys.new_key(
        session,
        account_id(),
        datetime.now(UTC),
        args["secret"],
        origins,
        whole_body_signatures=args["whole_body_signatures"],
    )
    session.commit()
    return created


@blp.route("/keys/<id:key_id>", methods=["DELETE"])
@blp.response(204)
def revoke_key(key_id: int) -> Response:
    session = get_session()
    if not keys.revoke_key(session, account_id(), key_id, datetime.now(UTC)):
        raise NotFound("No such key.")
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
