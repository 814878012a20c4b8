"""The condition operators of CONTRACT section 3. `matches` uses RE2, whose matching time is
linear in the input, so no admin-supplied pattern can stall ingestion; and `matches` and
`contains` look at the first MAX_CONDITION_TEXT characters of a string only, so that the
time of a condition is bounded whatever the event holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2

from receiver.rules.paths import MISSING

MAX_PATTERN_LENGTH = 1_000
# Longer than any URL, referrer or form field a rule has reason to search; an event may hold
# 32 KB strings, and each of the 2,000 conditions an account may have would scan all of it.
MAX_CONDITION_TEXT = 4_096
Operator = Callable[[Any, Any], bool]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _comparable(actual: Any, expected: Any) -> bool:
    return (_number(actual) and _number(expected)) or (
        isinstance(actual, str) and isinstance(expected, str)
    )


def _equal(actual: Any, expected: Any) -> bool:
    """JSON equality: 1 equals 1.0, but true is not 1 and "1" is not 1."""
    if _number(actual) and _number(expected):
        return bool(actual == expected)
    return type(actual) is type(expected) and actual == expected


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual[:MAX_CONDITION_TEXT]
    return isinstance(actual, list) and expected in actual


def compile_pattern(pattern: Any) -> Any:
    """A compiled RE2 pattern; raises ValueError for an invalid or oversized one."""
    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"a pattern is a string of at most {MAX_PATTERN_LENGTH} characters")
    try:
        return re2.compile(pattern)
    except re2.error as error:
        raise ValueError(f"invalid regular expression: {error}") from None


OPERATORS: dict[str, Operator] = {
    "equals": _equal,
    "not_equals": lambda a, e: not _equal(a, e),
    "contains": _contains,
    "starts_with": lambda a, e: isinstance(a, str) and isinstance(e, str) and a.startswith(e),
    "ends_with": lambda a, e: isinstance(a, str) and isinstance(e, str) and a.endswith(e),
    "matches": lambda a, pattern: (
        isinstance(a, str) and pattern.search(a[:MAX_CONDITION_TEXT]) is not None
    ),
    "exists": lambda a, e: True,
    "not_exists": lambda a, e: False,
    "in": lambda a, e: isinstance(e, list) and any(_equal(a, item) for item in e),
    "gt": lambda a, e: _comparable(a, e) and a > e,
    "gte": lambda a, e: _comparable(a, e) and a >= e,
    "lt": lambda a, e: _comparable(a, e) and a < e,
    "lte": lambda a, e: _comparable(a, e) and a <= e,
}
NO_VALUE = frozenset({"exists", "not_exists"})


def holds(op: str, actual: Any, expected: Any) -> bool:
    """Whether the condition holds; a path that did not resolve holds only for not_exists."""
    if actual is MISSING:
        return op == "not_exists"
    return OPERATORS[op](actual, expected)


# What conditions spend of a request's budget, in units of about 10 ns of one core (measured
# on the 2-core CI host): a condition costs about 1 us, a `matches` 8 us of RE2's overhead
# plus 10 ns a character, a list 200 ns an item.
CONDITION_COST, PATTERN_COST, ITEM_COST = 100, 800, 20


def cost(op: str, actual: Any, expected: Any) -> int:
    """What evaluating a condition on this value spends of a request's budget."""
    units = PATTERN_COST if op == "matches" else CONDITION_COST
    if isinstance(actual, str) and op in {"matches", "contains"}:
        units += min(len(actual), MAX_CONDITION_TEXT) // (1 if op == "matches" else 8)
    for value in (actual, expected):
        if isinstance(value, list):
            units += ITEM_COST * len(value)
    return units
