"""Bearer admin tokens: each sees its own account only."""

from __future__ import annotations

import sqlalchemy as sa
from flask import g, request
from sqlmodel import col

from receiver.db import get_session
from receiver.errors import Unauthorized
from receiver.models import AdminToken
from receiver.refusals import admin_token_of


def require_admin() -> None:
    """before_request of every admin blueprint: sets g.account_id, or answers 401."""
    credential = admin_token_of(request.headers.get("Authorization", ""))
    found = (
        get_session()
        .execute(
            sa.select(col(AdminToken.id)).where(
                col(AdminToken.account_id) == credential.account_id,
                col(AdminToken.token_hash) == credential.digest,
                col(AdminToken.revoked_at).is_(None),
            )
        )
        .first()
    )
    if found is None:
        raise Unauthorized("Unknown or revoked admin token.")
    g.account_id = credential.account_id
    g.admin_token_id = found.id


def account_id() -> int:
    return int(g.account_id)
