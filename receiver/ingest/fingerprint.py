"""The content hash that recognises a redelivered event."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from receiver import exact_json

# Set or changed by each delivery rather than by the event itself.
DELIVERY_FIELDS = frozenset(
    {
        "sentAt",
        "sent_at",
        "receivedAt",
        "received_at",
        "_metadata",
        "integrations",
        "writeKey",
        "write_key",
    }
)
ORIGINAL_TIMESTAMP_FIELDS = ("originalTimestamp", "original_timestamp")


def canonical_json(event: dict[str, Any]) -> bytes:
    """The event without its delivery-time fields, keys sorted, no whitespace. `timestamp` is
    delivery-time too when `originalTimestamp` is present: Segment derives it from sentAt."""
    return split_json(event)[0]


def split_json(event: dict[str, Any]) -> tuple[bytes, bytes]:
    """canonical_json, and the delivery-time fields it leaves out (serialised the same way):
    together, everything of the event that is stored. Numbers are written as parsed, exactly
    (exact_json): the hash depends on the event, not on how a parser rounds. An integer and
    a number with a fraction or exponent are different content (`1` is not `1.0`), as they
    are different text: a redelivery repeats the event's bytes, so it is never split."""
    dropped = DELIVERY_FIELDS
    if any(name in event for name in ORIGINAL_TIMESTAMP_FIELDS):
        dropped = DELIVERY_FIELDS | {"timestamp"}
    kept = {key: value for key, value in event.items() if key not in dropped}
    left_out = {key: value for key, value in event.items() if key in dropped}
    return (
        exact_json.dumps(kept, option=orjson.OPT_SORT_KEYS),
        exact_json.dumps(left_out) if left_out else b"",
    )


def content_hash(canonical: bytes) -> bytes:
    return hashlib.sha256(canonical).digest()
