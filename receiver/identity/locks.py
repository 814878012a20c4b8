"""The account's identity lock.

A track that finds no lead for its visitor goes to cold storage; an identify for the same
visitor moves cold signals onto the lead. Were both to run at once, the track could commit
cold right after the identify had rehydrated, and stay stranded. So events that only read the
identity graph take the account's lock shared, and events that change it (identify, alias,
group, delete) take it exclusive: the two never overlap, and reads still run side by side.
The lock is transaction-scoped, so commit or rollback releases it.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session

LOCK_NAMESPACE = 0x52_43  # the first key of the two-int advisory lock space, ours
SHARED, EXCLUSIVE = "shared", "exclusive"


def lock_account(session: Session, account_id: int, mode: str) -> None:
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite runs one writing transaction at a time (BEGIN IMMEDIATE) anyway
    session.connection().execute(
        _LOCKS[mode], {"namespace": LOCK_NAMESPACE, "account": account_id % 2**31}
    )


_LOCKS = {
    EXCLUSIVE: sa.text("SELECT pg_advisory_xact_lock(:namespace, :account)"),
    SHARED: sa.text("SELECT pg_advisory_xact_lock_shared(:namespace, :account)"),
}
