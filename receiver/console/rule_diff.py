"""What changed from one version of a rule to the next, line by line, for the versions list."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import orjson

from receiver import exact_json
from receiver.rules.service import DEFINITION


def definition_lines(version: Any) -> list[str]:
    definition = {name: getattr(version, name) for name in DEFINITION}
    text = exact_json.dumps(definition, option=orjson.OPT_INDENT_2).decode()
    return text.splitlines()


def changes(before: Any | None, after: Any) -> list[tuple[str, str]]:
    """(mark, line) pairs: "+" added, "-" removed; unchanged lines are left out. The first
    version shows all of its lines as added."""
    old = definition_lines(before) if before is not None else []
    marks: Mapping[str, str] = {"+ ": "+", "- ": "-"}
    return [
        (marks[line[:2]], line[2:])
        for line in difflib.ndiff(old, definition_lines(after))
        if line[:2] in marks
    ]
