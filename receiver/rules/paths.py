"""Dot paths into an event: `context.page.url`, `properties.products.0.sku`."""

from __future__ import annotations

import re
from typing import Any

MAX_PATH_LENGTH = 500
MAX_SEGMENTS = 32
_SEGMENT = re.compile(r"^[^.\s]+$")


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
        and all(_SEGMENT.match(segment) for segment in segments)
    )


def resolve(event: Any, path: str) -> Any:
    """The value at path: object keys by name, list items by index; MISSING otherwise."""
    value = event
    for segment in path.split("."):
        if isinstance(value, dict):
            if segment not in value:
                return MISSING
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return MISSING
    return value
