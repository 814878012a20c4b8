"""Lead fields from traits, where a late (older) identify never overwrites a newer one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

LEAD_FIELDS = ("name", "first_name", "last_name", "company", "title")
# Fixed width, UTC: stamps compare as strings.
STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_ALIASES = {"firstName": "first_name", "lastName": "last_name"}


def merge_traits(
    current: dict[str, Any], times: dict[str, str], incoming: dict[str, Any], at: datetime
) -> tuple[dict[str, Any], dict[str, str]]:
    """Traits merged key by key: a value wins if its event time is not older than the one that
    set the current value."""
    stamp = at.astimezone(UTC).strftime(STAMP_FORMAT)
    traits, stamps = dict(current), dict(times)
    for key, value in incoming.items():
        if value is None:
            continue
        if key not in stamps or stamps[key] <= stamp:
            traits[key], stamps[key] = value, stamp
    return traits, stamps


def merge_stamped(
    current: dict[str, Any], times: dict[str, str], incoming: dict[str, Any], at: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Two leads' traits merged key by key, each stamped with the event time that set it: the
    later one wins (a trait without a stamp is older than any)."""
    traits, stamps = dict(current), dict(times)
    for key, value in incoming.items():
        stamp = at.get(key, "")
        if value is not None and (key not in traits or stamps.get(key, "") < stamp):
            traits[key], stamps[key] = value, stamp
    return traits, stamps


def lead_fields(traits: dict[str, Any]) -> dict[str, str | None]:
    """The lead's columns as its merged traits give them."""
    values: dict[str, Any] = {field: None for field in LEAD_FIELDS}
    for key, value in traits.items():
        field = _ALIASES.get(key, key)
        if field in values and values[field] is None:
            values[field] = value
    company = values["company"]
    if isinstance(company, dict):
        values["company"] = company.get("name")
    if values["name"] is None and (values["first_name"] or values["last_name"]):
        values["name"] = " ".join(str(v) for v in (values["first_name"], values["last_name"]) if v)
    return {field: _text(value) for field, value in values.items()}


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text[:500] or None
