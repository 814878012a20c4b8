"""Compiled rules, matched against events. The enabled rule of highest priority that matches
an event maps it: a name, a score, and fields extracted by dot path."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from cachetools import LRUCache, cached
from sqlmodel import Session

from receiver.events import Match
from receiver.identity.identifiers import normalise_email
from receiver.models import rules_table
from receiver.rules.operators import NO_VALUE, compile_pattern, cost, holds
from receiver.rules.paths import MISSING, resolve

log = logging.getLogger(__name__)

# What one request may spend matching its events, in the units of operators.cost (about
# 10 ns each): about 1 s of one core. 20 rules of 50 `matches` over a 3 MB batch took 19.9 s
# before there was a budget; 4,000 events against 10 rules of 2 conditions spend a tenth.
EVALUATION_BUDGET = 100_000_000
# Looking at a rule at all (its source, type and name), conditions aside.
RULE_COST = 30


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: Any

    def holds(self, event: Any, budget: Budget | None = None) -> bool:
        actual = resolve(event, self.field)
        if budget is not None and not budget.spend(cost(self.op, actual, self.value)):
            return False
        return holds(self.op, actual, self.value)


@dataclass(slots=True)
class Budget:
    """What one request may still spend on matching. Once it is spent, no condition holds:
    the rest of the body is stored unmapped (in the Signal Queue) rather than refused."""

    remaining: int = field(default_factory=lambda: EVALUATION_BUDGET)
    exhausted: bool = False

    def spend(self, units: int) -> bool:
        self.remaining -= units
        if self.remaining < 0 and not self.exhausted:
            self.exhausted = True
            log.warning("rule evaluation budget spent: the rest of the body is stored unmapped")
        return not self.exhausted


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: int
    priority: int
    name: str
    source: str | None
    event_type: str | None
    event_name: str | None
    conditions: tuple[Condition, ...]
    fields: tuple[tuple[str, str], ...]
    signal_name: str | None
    score: int | None

    def matches(
        self,
        source: str,
        event_type: str | None,
        event_name: str | None,
        payload: Any,
        budget: Budget | None = None,
    ) -> bool:
        return (
            (self.source is None or self.source == source)
            and (self.event_type is None or self.event_type == event_type)
            and (self.event_name is None or self.event_name == event_name)
            and all(condition.holds(payload, budget) for condition in self.conditions)
        )

    def extract(self, payload: Any) -> dict[str, Any]:
        found = {name: resolve(payload, path) for name, path in self.fields}
        return {name: value for name, value in found.items() if value is not MISSING}

    def match(self, payload: Any) -> Match:
        return Match(self.id, self.signal_name or self.name, self.score, self.extract(payload))


def compile_rule(rule: Mapping[str, Any], rule_id: int = 0) -> CompiledRule:
    """Raises ValueError for a condition that cannot be evaluated (an invalid pattern)."""
    conditions = tuple(
        Condition(
            c["field"],
            c["op"],
            compile_pattern(c.get("value"))
            if c["op"] == "matches"
            else None
            if c["op"] in NO_VALUE
            else c.get("value"),
        )
        for c in rule.get("conditions") or ()
    )
    signal = rule.get("signal") or {}
    return CompiledRule(
        id=rule_id,
        priority=rule.get("priority") or 0,
        name=rule.get("name") or "",
        source=rule.get("source"),
        event_type=rule.get("event_type"),
        event_name=rule.get("event_name"),
        conditions=conditions,
        fields=tuple(sorted((rule.get("fields") or {}).items())),
        signal_name=signal.get("name"),
        score=signal.get("score"),
    )


def matched_email(match: Match) -> str | None:
    """The email a match extracted, if it is one."""
    return normalise_email(match.fields.get("email"))


def first_match(
    rules: Sequence[CompiledRule],
    source: str,
    event_type: str | None,
    event_name: str | None,
    payload: Any,
    budget: Budget | None = None,
) -> Match | None:
    """rules come ordered by priority, highest first. With a budget, nothing matches once
    it is spent, even a rule that would have."""
    for rule in rules:
        if budget is not None and not budget.spend(RULE_COST):
            return None
        if rule.matches(source, event_type, event_name, payload, budget):
            return None if budget is not None and budget.exhausted else rule.match(payload)
    return None


# Compiled rules by (store, account, rules_version). The version is read with the API key on
# every request and bumped by every rule change, so an entry is never used once it is stale;
# the store is part of the key because account ids and versions repeat from one database to
# another (a process reaching both Postgres and SQLite, or two databases).
@cached(
    LRUCache(maxsize=512),
    key=lambda store, account_id, version, fetch: (store, account_id, version),
    lock=threading.Lock(),
)
def rules_at(
    store: str, account_id: int, version: int, fetch: Callable[[], Iterable[Any]]
) -> tuple[CompiledRule, ...]:
    """The account's enabled rules at this version in this store (its URL without password):
    compiled once per process, from the rows of ENABLED_RULES that fetch returns."""
    return tuple(compile_rule(dict(row), row["id"]) for row in fetch())


def store_of(engine: sa.Engine) -> str:
    """The store rules_at keys its cache by."""
    return engine.url.render_as_string(hide_password=True)


def active_rules(session: Session, account_id: int, version: int) -> tuple[CompiledRule, ...]:
    return rules_at(
        store_of(session.get_bind().engine),
        account_id,
        version,
        lambda: session.execute(ENABLED_RULES, {"account_id": account_id}).mappings(),
    )


def _enabled_rules() -> sa.Select:
    r = rules_table.c
    return (
        sa.select(
            r.id,
            r.name,
            r.priority,
            r.source,
            r.event_type,
            r.event_name,
            r.conditions,
            r.fields,
            r.signal,
        )
        .where(r.account_id == sa.bindparam("account_id"), r.enabled)
        .order_by(r.priority.desc(), r.id)
    )


ENABLED_RULES = _enabled_rules()
