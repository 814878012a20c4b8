"""The console's pure helpers: a payload's path tree and the shares of its paths, the rule
editor's value boxes, and the diff between two versions of a rule."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from receiver.console import payload_tree, rule_diff, rule_form
from receiver.rules.service import DEFINITION


def test_a_payload_tree_lists_every_path_parents_first_with_its_leaf_values():
    payload = {"type": "track", "properties": {"email": "a@b.c", "items": [{"sku": 7}]}}
    nodes = payload_tree.tree(payload)
    assert [(n.path, n.depth, n.kind, n.value) for n in nodes] == [
        ("type", 0, "string", '"track"'),
        ("properties", 0, "object", None),
        ("properties.email", 1, "string", '"a@b.c"'),
        ("properties.items", 1, "list", None),
        ("properties.items.0", 2, "object", None),
        ("properties.items.0.sku", 3, "number", "7"),
    ]


def test_a_key_no_rule_path_can_name_is_shown_but_not_pickable():
    payload = {"a.b": {"c": 1}, "ok": 2, "with space": 3}
    nodes = {n.path: n for n in payload_tree.tree(payload)}
    assert not nodes["a.b"].pickable and not nodes["a.b.c"].pickable
    assert not nodes["with space"].pickable
    assert nodes["ok"].pickable


def test_a_payload_tree_is_bounded_however_large_the_payload():
    wide = {f"k{n}": [list(range(50))] * 50 for n in range(1000)}
    nodes = payload_tree.tree(wide)
    assert len({n.path.split(".")[0] for n in nodes}) == payload_tree.MAX_KEYS
    assert max(int(n.key) for n in nodes if n.depth == 1) < payload_tree.MAX_ITEMS
    deep: dict = {}
    level = deep
    for _ in range(50):
        level["x"] = {}
        level = level["x"]
    assert max(n.depth for n in payload_tree.tree(deep)) == payload_tree.MAX_DEPTH - 1


def test_a_long_value_is_cut():
    (node,) = payload_tree.tree({"text": "x" * 500})
    assert node.value is not None and len(node.value) == payload_tree.MAX_VALUE_CHARS


def test_shares_count_the_payloads_that_hold_each_path():
    payloads = [
        {"properties": {"email": "a", "company": "x"}},
        {"properties": {"email": "b", "company": None}},  # null is there: the path exists
        {"properties": {"email": "c"}},
        {"traits": {}},
    ]
    paths = ["properties.email", "properties.company", "traits", "nowhere"]
    assert payload_tree.shares(payloads, paths) == {
        "properties.email": 0.75,
        "properties.company": 0.5,
        "traits": 0.25,
        "nowhere": 0.0,
    }
    assert payload_tree.shares([], ["a"]) == {"a": 0.0}


@pytest.mark.parametrize(
    ("op", "text", "value"),
    [
        ("equals", "demo", "demo"),
        ("equals", "10", 10),
        ("equals", '"10"', "10"),
        ("equals", "true", True),
        ("contains", "10", "10"),
        ("matches", "^a.*", "^a.*"),
        ("in", '["a", "b"]', ["a", "b"]),
        ("in", "a, b ,c", ["a", "b", "c"]),
        ("gt", "2.5", 2.5),
        ("gt", "12345678901234567890123", 12345678901234567890123),
        ("exists", "anything", None),
    ],
)
def test_a_condition_value_box_reads_as_its_operator_needs_and_reads_back(op, text, value):
    assert rule_form.parse_value(op, text) == value
    shown = rule_form.format_value({"op": op, "value": value})
    assert rule_form.parse_value(op, shown) == value


def test_the_editor_form_becomes_the_rule_the_json_api_takes():
    form = rule_form.MultiDict(
        [
            ("name", " Demo "),
            ("enabled", "on"),
            ("priority", "7"),
            ("source", "segment"),
            ("event_type", ""),
            ("event_name", "Demo Requested"),
            ("condition_field", "properties.form"),
            ("condition_op", "equals"),
            ("condition_value", "demo"),
            ("condition_field", ""),
            ("condition_op", "equals"),
            ("condition_value", "ignored: no path"),
            ("field_name", "email"),
            ("field_path", "properties.email"),
            ("signal_name", ""),
            ("signal_score", "10"),
        ]
    )
    data, errors = rule_form.load(rule_form.rule_from_form(form))
    assert errors == {}
    assert data == {
        "name": "Demo",
        "enabled": True,
        "priority": 7,
        "source": "segment",
        "event_type": None,
        "event_name": "Demo Requested",
        "conditions": [{"field": "properties.form", "op": "equals", "value": "demo"}],
        "fields": {"email": "properties.email"},
        "signal": {"name": None, "score": 10},
    }


def test_errors_read_as_lines_with_rows_counted_from_one():
    _, errors = rule_form.load(
        {"name": "", "conditions": [{"field": "a", "op": "gt", "value": "x"}]}
    )
    lines = rule_form.error_lines(errors)
    assert "conditions 1 value: `gt` needs a number, such as 3 or 2.5." in lines
    assert any(line.startswith("name: ") for line in lines)


def version(**changes):
    base = {name: None for name in DEFINITION} | {"name": "R", "enabled": True, "priority": 1}
    return SimpleNamespace(**(base | changes))


def test_a_versions_diff_shows_what_changed_and_the_first_shows_all():
    first, second = version(), version(priority=5, enabled=False)
    assert sorted(rule_diff.changes(first, second)) == [
        ("+", '  "enabled": false,'),
        ("+", '  "priority": 5,'),
        ("-", '  "enabled": true,'),
        ("-", '  "priority": 1,'),
    ]
    assert rule_diff.changes(first, first) == []
    assert all(mark == "+" for mark, _ in rule_diff.changes(None, first))
