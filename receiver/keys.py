"""An account's API keys and plan usage as its admins see them: the JSON API
(api/admin_account.py) and the console (console/account.py) answer from here."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from sqlmodel import Session, col, select

from receiver.accounts import create_api_key
from receiver.models import Account, ApiKey
from receiver.store import period_of, used_this_period


def usage(session: Session, account_id: int, now: datetime) -> dict[str, Any]:
    """Raw signals stored this calendar month (UTC) against the plan's limit."""
    account = session.get(Account, account_id)
    assert account is not None
    start, end = period_of(now)
    return {
        "plan": account.plan,
        "limit": account.signal_limit,
        "used": used_this_period(session, account_id, start),
        "period_start": datetime.combine(start, time(), tzinfo=UTC),
        "period_end": end,
    }


def list_keys(session: Session, account_id: int) -> list[dict[str, Any]]:
    keys = session.exec(
        select(ApiKey).where(ApiKey.account_id == account_id).order_by(col(ApiKey.id))
    )
    return [key_summary(key) for key in keys]


def new_key(
    session: Session,
    account_id: int,
    now: datetime,
    secret: str | None,
    allowed_origins: list[str] | None,
    whole_body_signatures: bool = False,
) -> dict[str, Any]:
    """A new key, server or (with allowed_origins) browser, with the key itself: the one time
    it is shown."""
    credential = create_api_key(
        session,
        account_id,
        now,
        secret,
        allowed_origins,
        whole_body_signatures=whole_body_signatures,
    )
    stored = session.exec(
        select(ApiKey).where(ApiKey.account_id == account_id, ApiKey.key_hash == credential.digest)
    ).one()
    return {
        **key_summary(stored),
        "api_key": credential.text,
        "webhook_path": f"/webhook/{credential.text}",
    }


def revoke_key(session: Session, account_id: int, key_id: int, now: datetime) -> bool:
    """Revoke the account's key of that id (revoked already is fine); False if it has none."""
    key = session.exec(
        select(ApiKey).where(ApiKey.account_id == account_id, ApiKey.id == key_id)
    ).first()
    if key is None:
        return False
    key.revoked_at = key.revoked_at or now
    session.flush()
    return True


def key_summary(key: ApiKey) -> dict[str, Any]:
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
