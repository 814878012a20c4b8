"""Tiny builders of Segment events, with keyword overrides."""

from __future__ import annotations

import uuid
from typing import Any


def track(event: str = "Signed Up", **overrides: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": event,
        "anonymousId": overrides.pop("anonymousId", f"anon-{uuid.uuid4()}"),
        "messageId": overrides.pop("messageId", f"msg-{uuid.uuid4()}"),
        "properties": {"plan": "pro"},
        "context": {"page": {"url": "https://example.com/pricing"}},
        "originalTimestamp": "2026-11-01T10:00:00.000Z",
        "timestamp": "2026-11-01T10:00:00.100Z",
        "sentAt": "2026-11-01T10:00:01.000Z",
        **overrides,
    }


def identify(email: str | None = "ada@example.com", **overrides: Any) -> dict[str, Any]:
    traits = {"email": email, "name": "Ada Lovelace"} if email else {"name": "Ada Lovelace"}
    return {
        "type": "identify",
        "anonymousId": overrides.pop("anonymousId", f"anon-{uuid.uuid4()}"),
        "messageId": overrides.pop("messageId", f"msg-{uuid.uuid4()}"),
        "traits": overrides.pop("traits", traits),
        "timestamp": "2026-11-01T10:05:00.000Z",
        **overrides,
    }
