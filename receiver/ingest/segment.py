"""Recognise Segment events (camelCase or snake_case) and read what the store indexes.

A Segment event has one of Segment's types and at least one of its identifiers; any other
JSON object is a generic webhook signal, stored as it came (a 400 would lose it: Segment does
not retry one).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.events import Draft, InvalidEvent
from receiver.ingest.fingerprint import content_hash, split_json

SEGMENT_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias", "delete"})
IDENTIFIERS = (("anonymousId", "anonymous_id"), ("userId", "user_id"), ("messageId", "message_id"))
NUL_ESCAPE = b"\\u0000"
# Identifiers and event names are index keys, and a Postgres index entry holds at most 2,704
# bytes: 512 characters fit whatever their encoding, and no real id or event name is longer.
MAX_KEY_LENGTH = 512


def field(event: dict[str, Any], camel: str, snake: str) -> Any:
    value = event.get(camel)
    return event.get(snake) if value is None else value


def identifier(event: dict[str, Any], camel: str, snake: str) -> str | None:
    value = field(event, camel, snake)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidEvent(f"`{camel}` must be a string.")
    return _index_key(f"`{camel}`", str(value).strip()) or None


def _index_key(what: str, text: str) -> str:
    if len(text) > MAX_KEY_LENGTH:
        raise InvalidEvent(f"{what} longer than {MAX_KEY_LENGTH} characters.")
    return text


def readable_message_id(event: Any) -> str | None:
    """The messageId of an event that may be invalid, if it is one a result can show."""
    if not isinstance(event, dict):
        return None
    try:
        return identifier(event, "messageId", "message_id")
    except InvalidEvent:
        return None


def looks_like_segment(event: dict[str, Any]) -> bool:
    kind = event.get("type")
    if not isinstance(kind, str) or kind not in SEGMENT_TYPES:
        return False
    return any(field(event, camel, snake) is not None for camel, snake in IDENTIFIERS)


def to_draft(
    event: Any, received_at: datetime, max_bytes: int, default_type: str | None = None
) -> Draft:
    if not isinstance(event, dict):
        raise InvalidEvent("An event must be a JSON object.")
    if default_type is not None and "type" not in event:
        event = {**event, "type": default_type}
    canonical, delivery = split_json(event)
    if len(canonical) + len(delivery) > max_bytes:
        raise InvalidEvent(f"Event larger than {max_bytes // 1024} KB.")
    if NUL_ESCAPE in canonical or NUL_ESCAPE in delivery:
        raise InvalidEvent("Event contains a NUL character, which cannot be stored.")
    digest = content_hash(canonical)
    if looks_like_segment(event):
        return _segment_draft(event, received_at, digest)
    return Draft(
        "webhook",
        None,
        _generic_name(event),
        None,
        None,
        readable_message_id(event),
        occurred_at(event, received_at),
        event,
        digest,
    )


def foreign_type_note(event: dict[str, Any]) -> str | None:
    """For a JSON object with a `type` that is none of Segment's: why it is a generic signal
    (a typo such as `trak` would otherwise pass unseen)."""
    kind = event.get("type")
    if not isinstance(kind, str) or kind in SEGMENT_TYPES:
        return None
    return (
        f"`type` {kind[:40]!r} is not one of Segment's ({', '.join(sorted(SEGMENT_TYPES))}): "
        "stored as a generic webhook signal."
    )


def _segment_draft(event: dict[str, Any], received_at: datetime, digest: bytes) -> Draft:
    kind = event["type"]
    for part in ("traits", "properties", "context"):
        if event.get(part) is not None and not isinstance(event[part], dict):
            raise InvalidEvent(f"`{part}` must be an object.")
    for camel, snake in (("groupId", "group_id"), ("previousId", "previous_id")):
        _index_key(f"`{camel}`", str(field(event, camel, snake) or ""))
    name = _segment_name(event, kind)
    if name is not None:
        _index_key("Event name", name)
    return Draft(
        source="segment",
        event_type=kind,
        event_name=name,
        anonymous_id=identifier(event, "anonymousId", "anonymous_id"),
        user_id=identifier(event, "userId", "user_id"),
        message_id=identifier(event, "messageId", "message_id"),
        occurred_at=occurred_at(event, received_at),
        payload=event,
        content_hash=digest,
    )


def _segment_name(event: dict[str, Any], kind: str) -> str | None:
    name = event.get("event") if kind == "track" else event.get("name")
    if kind in ("page", "screen") and name is None:
        name = (event.get("properties") or {}).get("name")
    return name if isinstance(name, str) and name else None


def _generic_name(event: dict[str, Any]) -> str | None:
    for key in ("event", "event_name", "eventName", "type", "name"):
        value = event.get(key)
        if isinstance(value, str) and 0 < len(value) <= MAX_KEY_LENGTH:
            return value
    return None


# How far past its arrival an event may be dated. Senders' clocks run fast too, and an event
# dated in the future would outrank every real one in trait precedence and pin the lead's
# last seen (an identify dated 9999-12-31 did both): later than this, it is dated this.
MAX_CLOCK_AHEAD = timedelta(minutes=10)


def occurred_at(event: dict[str, Any], received_at: datetime) -> datetime:
    """When the event happened by the sender's clock, or when it arrived; never later than
    MAX_CLOCK_AHEAD past its arrival."""
    return min(_sender_time(event, received_at), received_at + MAX_CLOCK_AHEAD)


def _sender_time(event: dict[str, Any], received_at: datetime) -> datetime:
    for camel, snake in (("timestamp", "timestamp"), ("originalTimestamp", "original_timestamp")):
        value = field(event, camel, snake)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
                return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            except (ValueError, OverflowError):  # not a time, or none in UTC's years 1 to 9999
                continue
    return received_at
