import pytest

from receiver.errors import BadRequest
from receiver.ingest.parse import first_element_span, parse_events


def test_one_object_is_one_event():
    assert parse_events(b'{"type":"track"}') == ([{"type": "track"}], False)


def test_array_and_batch_envelope_are_batches():
    assert parse_events(b'[{"a":1},{"b":2}]') == ([{"a": 1}, {"b": 2}], True)
    assert parse_events(b'{"batch":[{"a":1}],"sentAt":"x"}') == ([{"a": 1}], True)


@pytest.mark.parametrize(
    "raw",
    [
        b"{bad",
        b'{"a":1',
        b'"\xff\xfe"',
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b"[1e999]",
        b"",
        b'["\\ud800"]',
    ],
)
def test_malformed_json_is_a_bad_request(raw):
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_events(raw)


@pytest.mark.parametrize("depth", [300, 2000])
def test_excessive_nesting_is_a_bad_request(depth):
    with pytest.raises(BadRequest):
        parse_events(b'{"a":' + b"[" * depth + b"]" * depth + b"}")


@pytest.mark.parametrize("raw", [b"1", b'"text"', b"null", b"true"])
def test_top_level_scalar_is_a_bad_request(raw):
    with pytest.raises(BadRequest, match="object or an array"):
        parse_events(raw)


@pytest.mark.parametrize("raw", [b"[]", b'{"batch":[]}'])
def test_empty_batch_is_a_bad_request(raw):
    with pytest.raises(BadRequest, match="Empty batch"):
        parse_events(raw)


@pytest.mark.parametrize(
    ("raw", "first"),
    [
        (b'[{"a":"]}\\"x"}, 2]', b'{"a":"]}\\"x"}'),
        (b" [ 12 , 2]", b"12"),
        (b'["a,]" ,1]', b'"a,]"'),
        (b"[[1,[2]],3]", b"[1,[2]]"),
    ],
)
def test_first_element_span_is_the_raw_text_of_the_first_element(raw, first):
    start, end = first_element_span(raw)
    assert raw[start:end] == first


@pytest.mark.parametrize("raw", [b'{"a":1}', b"[]", b"  [ ] "])
def test_first_element_span_is_none_without_a_first_element(raw):
    assert first_element_span(raw) is None
