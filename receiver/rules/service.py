"""Saving rules. Every change bumps the account's rules version under the account's exclusive
identity lock, so it waits for in-flight ingestion that matched with the rules before it.

Every rule an account has is tried on every event it sends: its count and the conditions of
each are capped (RuleCaps), and checked under that lock, so that two saves at once cannot
both take the last place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from receiver.config import Settings
from receiver.errors import Unprocessable
from receiver.identity.locks import EXCLUSIVE, lock_account
from receiver.models import Account, Rule
from receiver.rules.backfill import PENDING

# What decides which stored signals a rule maps: changing one of these backfills again.
MATCH_FIELDS = ("enabled", "source", "event_type", "event_name", "conditions", "fields", "signal")


@dataclass(frozen=True)
class RuleCaps:
    rules_per_account: int
    conditions_per_rule: int

    @classmethod
    def of(cls, settings: Settings) -> RuleCaps:
        return cls(settings.max_rules_per_account, settings.max_conditions_per_rule)


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


def create_rule(
    session: Session,
    account_id: int,
    data: dict[str, Any],
    now: datetime,
    caps: RuleCaps | None = None,
) -> Rule:
    _changing_rules(session, account_id)
    if caps is not None:
        _check_conditions(data, caps)
        count = session.execute(
            sa.select(sa.func.count()).where(col(Rule.account_id) == account_id)
        ).scalar_one()
        if count >= caps.rules_per_account:
            raise Unprocessable(
                f"This account has {count} rules, the most it may have "
                "(MAX_RULES_PER_ACCOUNT): delete or merge some first.",
                errors={"_schema": [f"At most {caps.rules_per_account} rules per account."]},
            )
    rule = Rule(account_id=account_id, created_at=now, updated_at=now, **data)
    session.add(rule)
    session.flush()
    return rule


def update_rule(
    session: Session,
    rule: Rule,
    data: dict[str, Any],
    now: datetime,
    caps: RuleCaps | None = None,
) -> bool:
    """Apply data to rule; True when the change calls for a new backfill."""
    _changing_rules(session, rule.account_id)
    if caps is not None:
        _check_conditions(data, caps)
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


def _check_conditions(data: dict[str, Any], caps: RuleCaps) -> None:
    conditions = data.get("conditions") or ()
    if len(conditions) > caps.conditions_per_rule:
        message = f"At most {caps.conditions_per_rule} conditions per rule."
        raise Unprocessable(
            f"{message} (MAX_CONDITIONS_PER_RULE): split the rule or use `in` or `matches`.",
            errors={"conditions": [message]},
        )
