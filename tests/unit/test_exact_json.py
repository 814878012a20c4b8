"""Numbers as sent: integers past 64 bits are read, written and hashed exactly."""

from __future__ import annotations

import orjson
import pytest

from receiver import exact_json
from receiver.ingest.fingerprint import canonical_json, content_hash
from receiver.ingest.parse import parse_events

BIG = 123456789012345678901234567890


def test_a_body_with_an_integer_past_64_bits_keeps_it_exactly():
    events, _ = parse_events(b'{"type": "track", "properties": {"n": %d, "m": -%d}}' % (BIG, BIG))
    assert events[0]["properties"] == {"n": BIG, "m": -BIG}


def test_the_hash_tells_apart_integers_a_float_would_round_together():
    first, _ = parse_events(b'{"n": 123456789012345678901234567890}')
    second, _ = parse_events(b'{"n": 123456789012345678901234567891}')
    assert canonical_json(first[0]) == b'{"n":123456789012345678901234567890}'
    assert content_hash(canonical_json(first[0])) != content_hash(canonical_json(second[0]))


def test_values_without_big_integers_are_written_as_orjson_writes_them():
    value = {"b": [1, 2.5, "x\u00e9", None, True], "a": {"n": 2**64 - 1, "m": -(2**63)}}
    assert exact_json.dumps(value, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        value, option=orjson.OPT_SORT_KEYS
    )
    assert exact_json.loads(orjson.dumps(value)) == value


def test_one_and_one_point_zero_are_different_content():
    # A decision: redeliveries repeat an event's bytes, so only different senders' texts differ.
    assert canonical_json({"n": 1}) != canonical_json({"n": 1.0})


def test_a_long_digit_run_in_a_string_changes_nothing():
    text = '{"id": "12345678901234567890123", "n": 1.5}'
    assert exact_json.loads(text) == {"id": "12345678901234567890123", "n": 1.5}


@pytest.mark.parametrize("text", [b'{"n": NaN, "id": 12345678901234567890123}', b"\xff"])
def test_what_orjson_refuses_is_still_refused(text):
    with pytest.raises(orjson.JSONDecodeError):
        exact_json.loads(text)
