"""Turn a request body into a list of events, trusting none of it."""

from __future__ import annotations

import re
from typing import Any

import orjson

from receiver import exact_json
from receiver.errors import BadRequest

_WHITESPACE = b" \t\r\n"
_STRUCTURE = re.compile(rb'["\[\]{}]')
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def parse_events(raw: bytes) -> tuple[list[Any], bool]:
    """The events of a body (one object, an array, or {"batch": [...]}) and whether it was a
    batch. Anything that is not JSON a sender could mean is a BadRequest."""
    try:
        body = exact_json.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"Body is not valid JSON (UTF-8, no NaN or Infinity): {error}") from None
    try:
        # The serializer refuses nesting past 254 levels: the same bound applies when storing.
        exact_json.dumps(body)
    except orjson.JSONEncodeError:
        raise BadRequest("Body is nested too deeply.") from None
    if isinstance(body, dict) and isinstance(body.get("batch"), list):
        events, is_batch = body["batch"], True
    elif isinstance(body, list):
        events, is_batch = body, True
    elif isinstance(body, dict):
        events, is_batch = [body], False
    else:
        raise BadRequest("Body must be a JSON object or an array of objects.")
    if not events:
        raise BadRequest("Empty batch: there are no events in this body.")
    return events, is_batch


# Segment signs the first element of a batch: an event, at most MAX_EVENT_BYTES (32 KB by
# default) to be stored. The scan for its end is Python over each structural character, so it
# looks no further than this: a longer first element is no event this receiver stores anyway,
# and a 16 MB body costs no more to check than a batch of ordinary events.
MAX_SIGNED_ELEMENT_BYTES = 256 * 1024


def first_element_span(raw: bytes) -> tuple[int, int] | None:
    """Where the first element of a JSON array body starts and ends in the raw bytes, or None
    when the body is not an array or its first element is longer than
    MAX_SIGNED_ELEMENT_BYTES. The body is assumed to be valid JSON."""
    start = _skip_whitespace(raw, 0)
    return _first_element(raw[: start + MAX_SIGNED_ELEMENT_BYTES])


def _first_element(raw: bytes) -> tuple[int, int] | None:
    start = _skip_whitespace(raw, 0)
    if start >= len(raw) or raw[start : start + 1] != b"[":
        return None
    start = _skip_whitespace(raw, start + 1)
    if start >= len(raw) or raw[start : start + 1] == b"]":
        return None
    if raw[start : start + 1] in (b"{", b"["):
        end = _container_end(raw, start)
    elif raw[start : start + 1] == b'"':
        match = _STRING.match(raw, start)
        end = match.end() if match else None
    else:
        end = _scalar_end(raw, start)
    return None if end is None else (start, end)


def _skip_whitespace(raw: bytes, at: int) -> int:
    while at < len(raw) and raw[at] in _WHITESPACE:
        at += 1
    return at


def _container_end(raw: bytes, start: int) -> int | None:
    depth = 0
    at = start
    while (match := _STRUCTURE.search(raw, at)) is not None:
        char = match.group()
        if char == b'"':
            string = _STRING.match(raw, match.start())
            if string is None:
                return None
            at = string.end()
            continue
        depth += 1 if char in (b"[", b"{") else -1
        at = match.end()
        if depth == 0:
            return at
    return None


def _scalar_end(raw: bytes, start: int) -> int:
    at = start
    while at < len(raw) and raw[at : at + 1] not in (b",", b"]") and raw[at] not in _WHITESPACE:
        at += 1
    return at
