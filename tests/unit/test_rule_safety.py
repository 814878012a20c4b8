"""No path, however odd, makes matching raise: the engine runs inside ingestion, where an
exception is a 5xx that Segment retries for hours."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from receiver.rules.engine import RULE_COST, Budget, compile_rule, first_match, matched_email
from receiver.rules.operators import MAX_CONDITION_TEXT, NO_VALUE, OPERATORS, PATTERN_COST
from receiver.rules.paths import MISSING, is_valid_path, resolve

KEY = st.sampled_from(["a", "b", "0", "²"]) | st.text(max_size=4)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(KEY, children, max_size=5),
    max_leaves=30,
)
SEGMENT = KEY | st.sampled_from(["1", "٣", "9" * 5000, "01"])
PATH = st.lists(SEGMENT, max_size=4).map(lambda s: ".".join(["properties", *s])) | st.text()


@pytest.mark.parametrize("path", ["properties.items.²", "properties.items.٣", "a.¹²"])
def test_paths_with_digits_of_other_scripts_are_refused(path):
    assert not is_valid_path(path)


def test_a_superscript_segment_resolves_to_missing_instead_of_raising():
    assert resolve({"items": [1, 2, 3]}, "items.²") is MISSING
    assert resolve({"items": [1, 2, 3]}, "items.٣") is MISSING
    assert resolve({"items": ["x"]}, "items." + "0" * 5000) is MISSING


def test_ascii_indexes_and_keys_of_other_digits_still_resolve():
    assert resolve({"items": [1, 2, 3]}, "items.2") == 3
    assert resolve({"items": {"²": "squared"}}, "items.²") == "squared"


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    path=PATH,
    op=st.sampled_from(sorted(OPERATORS)),
    value=JSON,
    payload=st.dictionaries(KEY, JSON, max_size=5),
)
def test_no_path_or_payload_makes_matching_raise(path, op, value, payload):
    if op == "matches":
        value = ".*"
    rule = compile_rule(
        {
            "conditions": [{"field": path, "op": op, "value": None if op in NO_VALUE else value}],
            "fields": {"email": path, "name": path},
        },
        rule_id=1,
    )
    payload = {"type": "track", "event": "x", "properties": payload}
    match = first_match([rule], "segment", "track", "x", payload)
    if match is not None:
        email = matched_email(match)
        assert email is None or "@" in email


def test_matches_and_contains_look_at_the_first_4096_characters_only():
    far = {"t": "x" * MAX_CONDITION_TEXT + "needle"}
    near = {"t": "x" * (MAX_CONDITION_TEXT - 6) + "needle"}
    for op, value in [("matches", "needle"), ("contains", "needle")]:
        rule = compile_rule({"conditions": [{"field": "t", "op": op, "value": value}]})
        assert rule.matches("segment", "track", None, near)
        assert not rule.matches("segment", "track", None, far)


def test_once_the_budget_is_spent_nothing_more_matches():
    rule = compile_rule({"conditions": [{"field": "t", "op": "matches", "value": "a"}]}, 1)
    budget = Budget(remaining=3 * (PATTERN_COST + 1 + RULE_COST))
    matched = [first_match([rule], "segment", "track", None, {"t": "a"}, budget) for _ in range(6)]
    assert [m is not None for m in matched] == [True, True, True, False, False, False]
    assert budget.exhausted
