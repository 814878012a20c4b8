"""Condition values: comparisons read numbers in strings, RE2 errors stay out of the log."""

from __future__ import annotations

import pytest

from receiver.rules.operators import OPERATORS, compile_pattern


@pytest.mark.parametrize(
    ("actual", "expected"),
    [(5, True), ("5", True), (" 4.5 ", True), ("1e3", True), ("3", False), (2, False)],
)
def test_gt_reads_a_number_or_a_string_holding_one(actual, expected):
    assert OPERATORS["gt"](actual, 3) is expected


@pytest.mark.parametrize("actual", ["abc", "1_000", "nan", "inf", "", True, None, [5], {"a": 5}])
def test_gt_never_holds_for_what_is_not_a_number(actual):
    assert OPERATORS["gt"](actual, 3) is False and OPERATORS["lt"](actual, 3) is False


def test_an_invalid_pattern_has_a_clean_message_and_re2_writes_nothing(capfd):
    with pytest.raises(ValueError) as error:
        compile_pattern("(a")
    assert str(error.value) == "Invalid regular expression (RE2 syntax): missing ): (a."
    captured = capfd.readouterr()
    assert "re2" not in captured.err.lower() and "absl" not in captured.err
