"""Saving rules and their history. Every change bumps the account's rules version under the
account's exclusive identity lock, so it waits for in-flight ingestion that matched with the
rules before it; and every change keeps the definition it makes as a new row of
`rule_versions`, so that each version can be listed and reverted to.

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
from receiver.models import Account, Rule, RuleVersion, rules_table
from receiver.rules.backfill import CANCELLED, NONE, PENDING, RUNNING

# A rule's definition: what a version keeps and a revert puts back.
DEFINITION = (
    "name",
    "enabled",
    "priority",
    "source",
    "event_type",
    "event_name",
    "conditions",
    "fields",
    "signal",
)
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
    rule.backfill_status = PENDING if rule.enabled else NONE
    session.add(rule)
    session.flush()
    _keep_version(session, rule, now)
    return rule


def update_rule(
    session: Session,
    rule: Rule,
    data: dict[str, Any],
    now: datetime,
    caps: RuleCaps | None = None,
) -> bool:
    """Apply data to rule; True when the change calls for a new backfill. A change that
    changes nothing (`PATCH {}`, or the definition the rule has) is no new version."""
    if not _changes(rule, data):
        return False
    _changing_rules(session, rule.account_id)
    if caps is not None:
        _check_conditions(data, caps)
    session.refresh(rule)  # now that changes wait for each other: as the last one left it
    changed = _changes(rule, data)
    if not changed:
        return False
    for name in changed:
        setattr(rule, name, data[name])
    rule.version += 1
    rule.updated_at = now
    rematch = any(name in MATCH_FIELDS for name in changed)
    if rematch:
        rule.backfill_status = PENDING if rule.enabled else NONE
        rule.backfill_cursor = rule.backfill_scanned = rule.backfill_mapped = 0
        rule.backfill_heartbeat_at = rule.backfill_started_at = rule.backfill_finished_at = None
    session.flush()
    _keep_version(session, rule, now)
    return rematch and rule.enabled


def list_versions(session: Session, rule: Rule) -> list[RuleVersion]:
    return list(
        session.exec(
            select(RuleVersion)
            .where(RuleVersion.account_id == rule.account_id, RuleVersion.rule_id == rule.id)
            .order_by(col(RuleVersion.version))
        )
    )


def get_version(session: Session, rule: Rule, version: int) -> RuleVersion | None:
    return session.get(RuleVersion, (rule.account_id, rule.id, version))


def revert_rule(
    session: Session,
    rule: Rule,
    version: RuleVersion,
    now: datetime,
    caps: RuleCaps | None = None,
) -> bool:
    """Make an earlier definition the current one again: a change like any other, within
    today's caps."""
    definition = {name: getattr(version, name) for name in DEFINITION}
    return update_rule(session, rule, definition, now, caps)


def cancel_backfill(session: Session, rule: Rule, now: datetime) -> None:
    """Stop the rule's backfill where it is: the signals it mapped stay mapped. A backfill
    runner finds the state at its next chunk (it holds the rule's row for one chunk)."""
    r = rules_table.c
    session.execute(
        sa.update(rules_table)
        .where(
            r.account_id == rule.account_id,
            r.id == rule.id,
            r.backfill_status.in_([PENDING, RUNNING]),
        )
        .values(backfill_status=CANCELLED, backfill_finished_at=now)
    )
    session.flush()
    session.refresh(rule)


def delete_rule(session: Session, rule: Rule) -> None:
    """The rule and its versions go; the signals it mapped keep their mapping (README)."""
    _changing_rules(session, rule.account_id)
    session.delete(rule)
    session.flush()


def _changes(rule: Rule, data: dict[str, Any]) -> list[str]:
    return [name for name, value in data.items() if getattr(rule, name) != value]


def _keep_version(session: Session, rule: Rule, now: datetime) -> None:
    assert rule.id is not None
    session.add(
        RuleVersion(
            account_id=rule.account_id,
            rule_id=rule.id,
            version=rule.version,
            created_at=now,
            **{name: getattr(rule, name) for name in DEFINITION},
        )
    )
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
