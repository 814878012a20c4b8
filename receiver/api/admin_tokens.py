"""/admin/tokens: an account's admin tokens, created beside each other and revoked by id, so
that a leaked or departing token can be rotated out without locking the account out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Response, g
from flask_smorest import Blueprint
from sqlmodel import col, select

from receiver import accounts
from receiver.api.admin_auth import account_id, require_admin
from receiver.db import get_session
from receiver.errors import Conflict, NotFound
from receiver.models import AdminToken
from receiver.schemas import AdminTokenSchema, NewAdminTokenSchema

blp = Blueprint(
    "tokens",
    __name__,
    url_prefix="/admin/tokens",
    description="Admin tokens: several per account, each revocable.",
)
blp.before_request(require_admin)


@blp.route("", methods=["GET"], strict_slashes=False)
@blp.response(200, AdminTokenSchema(many=True))
def list_tokens() -> list[dict[str, Any]]:
    """The account's tokens by prefix, revoked ones too; `current` marks the caller's."""
    tokens = get_session().exec(
        select(AdminToken).where(AdminToken.account_id == account_id()).order_by(col(AdminToken.id))
    )
    return [_token(token) for token in tokens]


@blp.route("", methods=["POST"], strict_slashes=False)
@blp.response(201, NewAdminTokenSchema)
def create_token() -> dict[str, Any]:
    """A new token, shown once. Rotate by creating one, moving to it, then revoking the old."""
    session = get_session()
    credential, stored = accounts.create_admin_token(session, account_id(), datetime.now(UTC))
    session.commit()
    return {**_token(stored), "admin_token": credential.text}


@blp.route("/<id:token_id>", methods=["DELETE"])
@blp.response(204)
def revoke_token(token_id: int) -> Response:
    """Revoke a token, the caller's own too; never the account's last live one."""
    session = get_session()
    try:
        revoked = accounts.revoke_own_admin_token(
            session, account_id(), token_id, datetime.now(UTC)
        )
    except accounts.LastAdminToken:
        raise Conflict(
            "This is the account's last live admin token: revoking it would lock the account "
            "out. Create another first (POST /admin/tokens), then revoke this one."
        ) from None
    if revoked is None:
        raise NotFound("No such admin token.")
    session.commit()
    return Response(status=204)


def _token(token: AdminToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "prefix": token.prefix,
        "current": token.id == g.get("admin_token_id"),
        "created_at": token.created_at,
        "revoked_at": token.revoked_at,
    }
