"""The content hash that recognises a redelivered event."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

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
    together, everything of the event that is stored."""
    dropped = DELIVERY_FIELDS
    if any(name in event for name in ORIGINAL_TIMESTAMP_FIELDS):
        dropped = DELIVERY_FIELDS | {"timestamp"}
    kept = {key: value for key, value in event.items() if key not in dropped}
    left_out = {key: value for key, value in event.items() if key in dropped}
    return (
        orjson.dumps(kept, option=orjson.OPT_SORT_KEYS),
        orjson.dumps(left_out) if left_out else b"",
    )


def content_hash(canonical: bytes) -> bytes:
    return hashlib.sha256(canonical).digest()
