"""Accounts and their credentials: creation, lookup of a sender (or of a key's kind and
origins) by API key, revocation."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from cachetools import LRUCache
from sqlmodel import Session, col, select

from receiver.browser import BROWSER, SERVER, KeyAccess, normal_origins
from receiver.credentials import (
    ADMIN_TOKEN_KIND,
    API_KEY_KIND,
    Credential,
    new_credential,
    parse_credential,
)
from receiver.models import Account, AdminToken, ApiKey
from receiver.sealing import seal, secret_of

# A key's shared secret: short enough to guess is no secret; long only costs every request.
SECRET_MIN_LENGTH, SECRET_MAX_LENGTH = 8, 200


@dataclass(frozen=True)
class Sender:
    """The account behind an API key, with what ingestion needs of it."""

    account_id: int
    key_id: int
    secret: str | None
    plan: str
    signal_limit: int
    whole_body_signatures: bool = False


@dataclass(frozen=True)
class NewAccount:
    account_id: int
    api_key: str
    admin_token: str

    def as_json(self) -> dict[str, object]:
        return {
            "account_id": self.account_id,
            "api_key": self.api_key,
            "admin_token": self.admin_token,
            "webhook_path": f"/webhook/{self.api_key}",
        }


def create_account(
    session: Session,
    name: str,
    plan: str,
    signal_limit: int,
    cold_retention_days: int,
    now: datetime,
    secret: str | None = None,
) -> NewAccount:
    account = Account(
        name=name,
        plan=plan,
        signal_limit=signal_limit,
        cold_retention_days=cold_retention_days,
        created_at=now,
    )
    session.add(account)
    session.flush()
    assert account.id is not None
    key = create_api_key(session, account.id, now, secret)
    token, _ = create_admin_token(session, account.id, now)
    return NewAccount(account.id, key.text, token.text)


def create_admin_token(
    session: Session, account_id: int, now: datetime
) -> tuple[Credential, AdminToken]:
    """A new admin token of the account, beside those it has: shown once, stored hashed."""
    token = new_credential(ADMIN_TOKEN_KIND, account_id)
    stored = AdminToken(
        account_id=account_id, prefix=token.prefix, token_hash=token.digest, created_at=now
    )
    session.add(stored)
    session.flush()
    return token, stored


def revoke_admin_token(session: Session, admin_token: str, now: datetime) -> bool:
    """Revoke a token by its text, as the operator holds it; False when there is none such.
    The operator may revoke an account's last token: create-admin-token makes a new one."""
    token = parse_credential(admin_token, ADMIN_TOKEN_KIND)
    if token is None:
        return False
    stored = session.exec(
        select(AdminToken).where(
            AdminToken.account_id == token.account_id, AdminToken.token_hash == token.digest
        )
    ).first()
    if stored is None:
        return False
    stored.revoked_at = stored.revoked_at or now
    return True


def revoke_own_admin_token(
    session: Session, account_id: int, token_id: int, now: datetime
) -> AdminToken | None:
    """Revoke one of the account's tokens by id; None when it has no such token. Refuses
    (LastAdminToken) to revoke its last live one: the account would be locked out of its
    admin API. The account's row is locked first, so two tokens revoking each other at once
    cannot both succeed."""
    session.execute(
        sa.select(col(Account.id)).where(col(Account.id) == account_id).with_for_update()
    )
    tokens = session.exec(select(AdminToken).where(AdminToken.account_id == account_id)).all()
    target = next((token for token in tokens if token.id == token_id), None)
    if target is None or target.revoked_at is not None:
        return target
    if not any(token.revoked_at is None and token.id != token_id for token in tokens):
        raise LastAdminToken()
    target.revoked_at = now
    session.flush()
    return target


class LastAdminToken(Exception):
    """Revoking this token would leave its account without a live one."""


def account_exists(session: Session, account_id: int) -> bool:
    return session.get(Account, account_id) is not None


def create_api_key(
    session: Session,
    account_id: int,
    now: datetime,
    secret: str | None = None,
    allowed_origins: list[str] | None = None,
    whole_body_signatures: bool = False,
) -> Credential:
    """A server key (with its secret, if any), or a browser key when allowed_origins are
    given (valid ones: see browser.origins_problem). A browser key is public: no secret."""
    if allowed_origins is not None and secret:
        raise ValueError("a browser key has no secret")
    key = new_credential(API_KEY_KIND, account_id)
    session.add(
        ApiKey(
            account_id=account_id,
            prefix=key.prefix,
            key_hash=key.digest,
            secret=seal(secret or None),
            created_at=now,
            kind=SERVER if allowed_origins is None else BROWSER,
            whole_body_signatures=whole_body_signatures,
            allowed_origins=None if allowed_origins is None else normal_origins(allowed_origins),
        )
    )
    session.flush()
    return key


def create_key(
    session: Session,
    account_id: int,
    now: datetime,
    secret: str | None = None,
    allowed_origins: list[str] | None = None,
) -> dict[str, object] | None:
    """Another key of an existing account, as the CLI shows it once; None for no account."""
    if session.get(Account, account_id) is None:
        return None
    key = create_api_key(session, account_id, now, secret, allowed_origins)
    return {
        "account_id": account_id,
        "api_key": key.text,
        "kind": SERVER if allowed_origins is None else BROWSER,
        "allowed_origins": None if allowed_origins is None else normal_origins(allowed_origins),
        "webhook_path": f"/webhook/{key.text}",
    }


_SENDER = (
    sa.select(
        col(ApiKey.id),
        col(ApiKey.secret),
        col(Account.plan),
        col(Account.signal_limit),
        col(ApiKey.whole_body_signatures),
    )
    .join(Account, col(Account.id) == ApiKey.account_id)
    .where(
        col(ApiKey.account_id) == sa.bindparam("account_id"),
        col(ApiKey.key_hash) == sa.bindparam("key_hash"),
        col(ApiKey.revoked_at).is_(None),
    )
)


def find_sender(session: Session, api_key: str) -> Sender | None:
    key = parse_credential(api_key, API_KEY_KIND)
    if key is None:
        return None
    row = (
        session.connection()
        .execute(_SENDER, {"account_id": key.account_id, "key_hash": key.digest})
        .first()
    )
    if row is None:
        return None
    return Sender(
        key.account_id,
        row.id,
        secret_of(row.secret),
        row.plan,
        row.signal_limit,
        row.whole_body_signatures,
    )


_ACCESS = sa.select(col(ApiKey.id), col(ApiKey.kind), col(ApiKey.allowed_origins)).where(
    col(ApiKey.account_id) == sa.bindparam("account_id"),
    col(ApiKey.key_hash) == sa.bindparam("key_hash"),
    col(ApiKey.revoked_at).is_(None),
)


def find_key_access(session: Session, api_key: str) -> KeyAccess | None:
    """The kind and origins of an active API key; None when it is unknown or revoked."""
    key = parse_credential(api_key, API_KEY_KIND)
    if key is None:
        return None
    row = (
        session.connection()
        .execute(_ACCESS, {"account_id": key.account_id, "key_hash": key.digest})
        .first()
    )
    if row is None:
        return None
    return KeyAccess(key.account_id, row.id, row.kind, tuple(row.allowed_origins or ()))


_KNOWN_KEY = sa.select(col(ApiKey.id)).where(
    col(ApiKey.account_id) == sa.bindparam("account_id"),
    col(ApiKey.key_hash) == sa.bindparam("key_hash"),
)
# Hashes of keys found to exist, so that a request's key costs a query once per process: an
# unknown key is answered before its body is read (a made-up key's 16 MB body cost 600 MB of
# a worker to parse). Revocation is checked in every request's own transaction.
_known: LRUCache[bytes, bool] = LRUCache(maxsize=4096)
_known_lock = threading.Lock()


def known_key(engine: sa.Engine, api_key: str | None) -> bool:
    """Whether api_key is a key this store ever made (revoked or not)."""
    key = parse_credential(api_key, API_KEY_KIND) if api_key else None
    if key is None:
        return False
    with _known_lock:
        if key.digest in _known:
            return True
    with engine.connect() as connection:
        found = connection.execute(
            _KNOWN_KEY, {"account_id": key.account_id, "key_hash": key.digest}
        ).first()
    if found is not None:
        with _known_lock:
            _known[key.digest] = True
    return found is not None


def revoke_api_key(session: Session, api_key: str, now: datetime) -> bool:
    key = parse_credential(api_key, API_KEY_KIND)
    if key is None:
        return False
    stored = session.exec(
        select(ApiKey).where(ApiKey.account_id == key.account_id, ApiKey.key_hash == key.digest)
    ).first()
    if stored is None:
        return False
    if stored.revoked_at is None:
        stored.revoked_at = now
    return True


def any_account(session: Session) -> bool:
    return session.exec(select(Account.id).limit(1)).first() is not None
