"""Saving rules. Every change bumps the account's rules version under the account's exclusive
identity lock, so it waits for in-flight ingestion that matched with the rules before it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from receiver.identity.locks import EXCLUSIVE, lock_account
from receiver.models import Account, Rule
from receiver.rules.backfill import PENDING

# What decides which stored signals a rule maps: changing one of these backfills again.
MATCH_FIELDS = ("enabled", "source", "event_type", "event_name", "conditions", "fields", "signal")


def list_rules(session: Session, account_id: int) -> list[Rule]:
    return list(
        session.exec(
            select(Rule)
            .where(Rule.account_id == account_id)
            .order_by(col(Rule.priority).desc(), col(Rule.id))
        )
    )


def get_rule(session: Session, account_id: int, rule_id: int) -> Rule | None:
    return session.exec(
        select(Rule).where(Rule.account_id == account_id, Rule.id == rule_id)
    ).first()


def create_rule(session: Session, account_id: int, data: dict[str, Any], now: datetime) -> Rule:
    _changing_rules(session, account_id)
    rule = Rule(account_id=account_id, created_at=now, updated_at=now, **data)
    session.add(rule)
    session.flush()
    return rule


def update_rule(session: Session, rule: Rule, data: dict[str, Any], now: datetime) -> bool:
    """Apply data to rule; True when the change calls for a new backfill."""
    _changing_rules(session, rule.account_id)
    rematch = any(name in data and data[name] != getattr(rule, name) for name in MATCH_FIELDS)
    for name, value in data.items():
        setattr(rule, name, value)
    rule.version += 1
    rule.updated_at = now
    if rematch:
        rule.backfill_status, rule.backfill_cursor = PENDING, 0
        rule.backfill_scanned = rule.backfill_mapped = 0
        rule.backfill_heartbeat_at = rule.backfill_finished_at = None
    session.flush()
    return rematch


def delete_rule(session: Session, rule: Rule) -> None:
    _changing_rules(session, rule.account_id)
    session.delete(rule)
    session.flush()


def _changing_rules(session: Session, account_id: int) -> None:
    lock_account(session, account_id, EXCLUSIVE)
    session.execute(
        sa.update(Account)
        .where(col(Account.id) == account_id)
        .values(rules_version=col(Account.rules_version) + 1)
    )
