"""Console sessions, kept as rows (models.ConsoleSession): started by signing in with an admin
token, ended by signing out, by the token's revocation, or after IDLE unused (LIFETIME at
most). The cookie reads `<account_id>.<random>`: the account is known without a global lookup,
as for credentials, and only the random part's SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col

from receiver.credentials import ADMIN_TOKEN_KIND, parse_credential
from receiver.models import AdminToken, ConsoleSession, console_sessions_table

IDLE = timedelta(hours=12)
LIFETIME = timedelta(days=7)
# Last use is written at most this often: a page view is then a read only.
TOUCH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class Signed:
    """A live session: whose it is, and the token its forms must carry."""

    account_id: int
    admin_token_id: int
    csrf_token: str


def start(session: Session, admin_token: str, now: datetime) -> tuple[str, Signed] | None:
    """A new session for a live admin token: (cookie value, session); None for a token that
    is unknown, revoked or not an admin token at all."""
    credential = parse_credential(admin_token.strip(), ADMIN_TOKEN_KIND)
    if credential is None:
        return None
    token_id = session.execute(
        sa.select(col(AdminToken.id)).where(
            col(AdminToken.account_id) == credential.account_id,
            col(AdminToken.token_hash) == credential.digest,
            col(AdminToken.revoked_at).is_(None),
        )
    ).scalar()
    if token_id is None:
        return None
    _forget_expired(session, credential.account_id, now)
    random = secrets.token_urlsafe(32)
    signed = Signed(credential.account_id, token_id, secrets.token_urlsafe(32))
    session.add(
        ConsoleSession(
            account_id=signed.account_id,
            admin_token_id=token_id,
            session_hash=_digest(random),
            csrf_token=signed.csrf_token,
            created_at=now,
            last_seen_at=now,
            expires_at=now + IDLE,
        )
    )
    session.flush()
    return f"{signed.account_id}.{random}", signed


def find(session: Session, cookie: str, now: datetime) -> Signed | None:
    """The live session a cookie names, its last use noted; None when there is none: unknown,
    expired, signed out, or its admin token revoked since."""
    account_id, random = _parse(cookie)
    if account_id is None:
        return None
    c = console_sessions_table.c
    row = session.execute(
        sa.select(c.id, c.admin_token_id, c.csrf_token, c.created_at, c.last_seen_at)
        .join(
            AdminToken,
            sa.and_(
                col(AdminToken.account_id) == c.account_id,
                col(AdminToken.id) == c.admin_token_id,
            ),
        )
        .where(
            c.account_id == account_id,
            c.session_hash == _digest(random),
            c.expires_at > now,
            col(AdminToken.revoked_at).is_(None),
        )
    ).first()
    if row is None:
        return None
    if now - _aware(row.last_seen_at, now) >= TOUCH_EVERY:
        session.execute(
            sa.update(console_sessions_table)
            .where(c.account_id == account_id, c.id == row.id)
            .values(
                last_seen_at=now,
                expires_at=min(now + IDLE, _aware(row.created_at, now) + LIFETIME),
            )
        )
    return Signed(account_id, row.admin_token_id, row.csrf_token)


def end(session: Session, cookie: str) -> None:
    account_id, random = _parse(cookie)
    if account_id is None:
        return
    c = console_sessions_table.c
    session.execute(
        sa.delete(console_sessions_table).where(
            c.account_id == account_id, c.session_hash == _digest(random)
        )
    )


def _forget_expired(session: Session, account_id: int, now: datetime) -> None:
    c = console_sessions_table.c
    session.execute(
        sa.delete(console_sessions_table).where(c.account_id == account_id, c.expires_at <= now)
    )


def _parse(cookie: str) -> tuple[int | None, str]:
    account, _, random = cookie.partition(".")
    if not (account.isascii() and account.isdigit() and 0 < len(account) <= 18 and random):
        return None, ""
    return int(account), random


def _digest(random: str) -> bytes:
    return hashlib.sha256(random.encode()).digest()


def _aware(moment: datetime, like: datetime) -> datetime:
    # SQLite hands times back without their offset; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=like.tzinfo)
