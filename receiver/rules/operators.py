"""The condition operators of mapping rules (docs/reference.md, "Rule conditions"). `matches`
uses RE2, whose matching time is linear in the input, so no admin-supplied pattern can stall
ingestion; and `matches` and `contains` look at the first MAX_CONDITION_TEXT characters of a
string only, so that the time of a condition is bounded whatever the event holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2

from receiver.rules.paths import MISSING

MAX_PATTERN_LENGTH = 1_000
# RE2 writes each pattern it cannot parse to stderr (through absl, with a banner about
# absl::InitializeLog): the admin gets the error in the answer, the server log stays clean.
_QUIET = re2.Options()
_QUIET.log_errors = False
# Longer than any URL, referrer or form field a rule has reason to search; an event may hold
# 32 KB strings, and each of the 2,000 conditions an account may have would scan all of it.
MAX_CONDITION_TEXT = 4_096
Operator = Callable[[Any, Any], bool]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# A decimal number written as text, as form fields send them: "250", "-2.5", "1e3".
_NUMERIC_TEXT = re2.compile(r"^\s*-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\s*$")


def as_number(value: Any) -> int | float | None:
    """The number a comparison reads in an event's value: a JSON number, or a string that
    holds one (senders often put numbers in strings); None for anything else."""
    if _number(value):
        return value  # type: ignore[no-any-return]
    if isinstance(value, str) and len(value) < 400 and _NUMERIC_TEXT.match(value):
        text = value.strip()
        return float(text) if any(c in text for c in ".eE") else int(text)
    return None


def _compare(actual: Any, expected: Any, holds_for: Callable[[Any, Any], bool]) -> bool:
    number = as_number(actual)
    return number is not None and _number(expected) and holds_for(number, expected)


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
        return re2.compile(pattern, options=_QUIET)
    except re2.error as error:
        reason = error.args[0] if error.args else b""
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(f"Invalid regular expression (RE2 syntax): {reason}.") from None


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
    "gt": lambda a, e: _compare(a, e, lambda x, y: x > y),
    "gte": lambda a, e: _compare(a, e, lambda x, y: x >= y),
    "lt": lambda a, e: _compare(a, e, lambda x, y: x < y),
    "lte": lambda a, e: _compare(a, e, lambda x, y: x <= y),
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
