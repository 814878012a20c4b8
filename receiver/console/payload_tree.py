"""A payload as a tree of dot paths, for picking paths into a rule, and the share of a set
of payloads that hold each path. Pure: the queue page hands in a bounded sample."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from receiver import exact_json
from receiver.rules.paths import MISSING, is_valid_path, resolve

# What one page shows of a sample: a 32 KB event can hold thousands of paths.
MAX_DEPTH = 8
MAX_KEYS = 200
MAX_ITEMS = 5
MAX_VALUE_CHARS = 80


@dataclass(frozen=True)
class Node:
    path: str
    key: str
    depth: int
    kind: str  # object, list, string, number, boolean or null
    value: str | None  # a leaf's value as JSON, cut to MAX_VALUE_CHARS
    pickable: bool  # a path a rule can hold (no dots or spaces inside a key)


def tree(payload: Any) -> list[Node]:
    """The payload's paths in document order, parents before their children."""
    return list(_walk(payload, "", 0, True))


def _walk(value: Any, prefix: str, depth: int, pickable: bool) -> Iterator[Node]:
    if depth >= MAX_DEPTH:
        return
    if isinstance(value, dict):
        children: Sequence[tuple[str, Any]] = [(str(k), v) for k, v in value.items()][:MAX_KEYS]
    elif isinstance(value, list):
        children = [(str(i), v) for i, v in enumerate(value[:MAX_ITEMS])]
    else:
        return
    for key, child in children:
        path = f"{prefix}.{key}" if prefix else key
        # A key holding a dot would read as two segments: no rule path reaches it or below.
        reachable = pickable and "." not in key and is_valid_path(path)
        yield Node(path, key, depth, _kind(child), _leaf(child), reachable)
        yield from _walk(child, path, depth + 1, reachable)


def shares(payloads: Sequence[Any], paths: Sequence[str]) -> dict[str, float]:
    """Of payloads, the share (0 to 1) that hold each path; 0 for all when there are none."""
    if not payloads:
        return dict.fromkeys(paths, 0.0)
    return {
        path: sum(resolve(p, path) is not MISSING for p in payloads) / len(payloads)
        for path in paths
    }


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "string" if isinstance(value, str) else "number"


def _leaf(value: Any) -> str | None:
    if isinstance(value, dict | list):
        return None
    text = exact_json.dumps_text(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"
