"""What counts as an identifier or an email. Pure functions, no store."""

from __future__ import annotations

import re
from typing import Any

# Values that SDKs and careless code send in place of a real id. Linking on one of them would
# merge every visitor who sent it into one person.
JUNK_VALUES = frozenset(
    {
        "",
        "null",
        "nil",
        "none",
        "undefined",
        "anonymous",
        "anon",
        "unknown",
        "n/a",
        "na",
        "nan",
        "0",
        "-1",
        "[object object]",
        "object",
        "true",
        "false",
        "{}",
        "[]",
        "''",
        '""',
    }
)
_NO_INFORMATION = re.compile(r"^[\s0\-_.:]*$")
_EMAIL = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]{2,}$")
MAX_EMAIL_LENGTH = 254


def is_junk(value: str) -> bool:
    return value.strip().lower() in JUNK_VALUES or bool(_NO_INFORMATION.match(value))


def usable(value: str | None) -> str | None:
    """The identifier, or None when it could not tell one visitor from another."""
    return None if value is None or is_junk(value) else value


def normalise_email(value: Any) -> str | None:
    """Trimmed and lower-cased, or None if it is not an email address."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        return None
    return email


def traits_of(event: dict[str, Any]) -> dict[str, Any]:
    """An identify's traits, falling back on context.traits (analytics.js puts them there)."""
    traits = event.get("traits")
    context = event.get("context")
    context_traits = context.get("traits") if isinstance(context, dict) else None
    merged: dict[str, Any] = {}
    for source in (context_traits, traits):
        if isinstance(source, dict):
            merged.update(source)
    return merged
