"""Dot paths into an event: `context.page.url`, `properties.products.0.sku`.

A segment of digits indexes a list, and only ASCII digits do: `'²'.isdigit()` is true yet
`int('²')` raises, and `'٣'` would index as 3. Saving refuses a segment of other digits, and
resolve never raises whatever path a stored rule holds, so no rule can make ingestion 5xx.
"""

from __future__ import annotations

import re
from typing import Any

MAX_PATH_LENGTH = 500
MAX_SEGMENTS = 32
_SEGMENT = re.compile(r"^[^.\s]+$")
# Longer than any list an event of at most 32 KB can hold, and far below int()'s digit limit.
_INDEX = re.compile(r"^[0-9]{1,9}$")


class Missing:
    """What a path that does not resolve yields: it matches no condition but not_exists."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = Missing()


def is_valid_path(path: str) -> bool:
    segments = path.split(".")
    return (
        0 < len(path) <= MAX_PATH_LENGTH
        and len(segments) <= MAX_SEGMENTS
        and all(_valid_segment(segment) for segment in segments)
    )


def _valid_segment(segment: str) -> bool:
    # Digits of another script read as an index to people and as a key to resolve: refused.
    has_other_digits = any(c.isdigit() and not c.isascii() for c in segment)
    return _SEGMENT.match(segment) is not None and not has_other_digits


def resolve(event: Any, path: Any) -> Any:
    """The value at path: object keys by name, list items by index; MISSING otherwise."""
    if not isinstance(path, str):
        return MISSING
    value = event
    for segment in path.split("."):
        if isinstance(value, dict):
            if segment not in value:
                return MISSING
            value = value[segment]
        elif isinstance(value, list) and _INDEX.match(segment) and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return MISSING
    return value
