"""A rule as the console's editor form holds it, and back: conditions and fields as rows of
text boxes. Validation is the JSON API's own (schemas.RuleSchema), on the dict built here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from marshmallow import ValidationError
from werkzeug.datastructures import MultiDict

from receiver import exact_json
from receiver.ingest.segment import SEGMENT_TYPES
from receiver.rules.operators import NO_VALUE, OPERATORS
from receiver.schemas import TEXT_OPERATORS, RuleSchema

OPERATOR_NAMES = tuple(OPERATORS)
EVENT_TYPES = tuple(sorted(SEGMENT_TYPES))
SOURCES = ("segment", "webhook")
# Blank rows below a rule's own, for a page without JavaScript to add conditions and fields.
BLANK_ROWS = 2
RULE = RuleSchema()


@dataclass(frozen=True)
class Draft:
    """What the editor shows: the rule's definition as text, and what was wrong with it."""

    rule: dict[str, Any]
    conditions: list[dict[str, str]]
    fields: list[tuple[str, str]]
    errors: dict[str, Any]

    @property
    def error_lines(self) -> list[str]:
        return error_lines(self.errors)


def draft_of(rule: dict[str, Any], errors: dict[str, Any] | None = None) -> Draft:
    conditions = [
        {"field": c.get("field", ""), "op": c.get("op", "equals"), "value": format_value(c)}
        for c in rule.get("conditions") or ()
    ]
    blank = {"field": "", "op": "equals", "value": ""}
    fields = list((rule.get("fields") or {}).items())
    return Draft(
        rule,
        conditions + [dict(blank) for _ in range(BLANK_ROWS)],
        fields + [("", "")] * BLANK_ROWS,
        errors or {},
    )


def rule_from_form(form: MultiDict[str, str]) -> dict[str, Any]:
    """The rule a submitted editor form describes, before validation (load)."""
    rows = zip(
        form.getlist("condition_field"),
        form.getlist("condition_op"),
        form.getlist("condition_value"),
        strict=False,
    )
    conditions = [
        {"field": field.strip(), "op": op, "value": parse_value(op, value)}
        for field, op, value in rows
        if field.strip()
    ]
    names = zip(form.getlist("field_name"), form.getlist("field_path"), strict=False)
    score = form.get("signal_score", "").strip()
    return {
        "name": form.get("name", "").strip(),
        "enabled": form.get("enabled") == "on",
        "priority": form.get("priority", "").strip() or 0,
        "source": form.get("source") or None,
        "event_type": form.get("event_type") or None,
        "event_name": form.get("event_name", "").strip() or None,
        "conditions": conditions,
        "fields": {name.strip(): path.strip() for name, path in names if name.strip()},
        "signal": {
            "name": form.get("signal_name", "").strip() or None,
            "score": score or None,
        },
    }


def load(raw: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the valid rule, {}) or (None, field-level errors), as the JSON API would say them."""
    try:
        return RULE.load(raw), {}
    except ValidationError as invalid:
        return None, invalid.normalized_messages()


def parse_value(op: str, text: str) -> Any:
    """A condition's value box: none for exists and not_exists, text for the text operators,
    else JSON when it reads as JSON (10, true, "10", ["a", "b"]) and text when it does not;
    `in` also takes items separated by commas."""
    if op in NO_VALUE:
        return None
    if op in TEXT_OPERATORS:
        return text
    try:
        return exact_json.loads(text)
    except orjson.JSONDecodeError:
        pass
    if op == "in":
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def format_value(condition: dict[str, Any]) -> str:
    """The value box that parse_value reads back as this condition's value."""
    op, value = condition.get("op", ""), condition.get("value")
    if op in NO_VALUE or value is None:
        return ""
    if isinstance(value, str) and (op in TEXT_OPERATORS or parse_value(op, value) == value):
        return value
    return exact_json.dumps_text(value)


def error_lines(errors: Any, where: str = "") -> list[str]:
    """Marshmallow's nested messages as lines: `conditions 1 value: ...` (rows count from 1)."""
    if isinstance(errors, dict):
        lines = []
        for key, inner in errors.items():
            name = str(key + 1) if isinstance(key, int) else "" if key == "_schema" else key
            lines += error_lines(inner, f"{where} {name}".strip())
        return lines
    if isinstance(errors, list) and all(isinstance(e, str) for e in errors):
        return [f"{where}: {e}" if where else e for e in errors]
    return [f"{where}: {errors}"] if where else [str(errors)]
