from datetime import UTC, datetime

import pytest

from receiver.events import InvalidEvent
from receiver.ingest.segment import to_draft

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def draft(event, **kwargs):
    return to_draft(event, NOW, 32 * 1024, **kwargs)


def test_camel_case_segment_track_is_recognised():
    d = draft(
        {
            "type": "track",
            "event": "Signed Up",
            "anonymousId": "a",
            "userId": 42,
            "messageId": "m",
            "timestamp": "2026-11-01T10:00:00+02:00",
        }
    )
    assert (d.source, d.event_type, d.event_name) == ("segment", "track", "Signed Up")
    assert (d.anonymous_id, d.user_id, d.message_id) == ("a", "42", "m")
    assert d.occurred_at == datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def test_snake_case_segment_page_is_recognised():
    d = draft(
        {
            "type": "page",
            "name": "Pricing",
            "anonymous_id": "a",
            "message_id": "m",
            "original_timestamp": "2026-11-01T10:00:00Z",
        }
    )
    assert (d.source, d.event_type, d.event_name, d.anonymous_id) == (
        "segment",
        "page",
        "Pricing",
        "a",
    )
    assert d.occurred_at == datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def test_generic_json_is_a_webhook_signal_received_now():
    d = draft({"event": "invoice.paid", "amount": 10})
    assert (d.source, d.event_name, d.occurred_at, d.anonymous_id, d.user_id) == (
        "webhook",
        "invoice.paid",
        NOW,
        None,
        None,
    )


@pytest.mark.parametrize(
    "event",
    [
        {"type": "launch", "anonymousId": "a", "messageId": "m"},
        {"type": 7, "userId": "u"},
        {"user_id": 5, "order": 1},
        {"messageId": "m", "event": "E"},
        {"type": "track", "event": "E"},
    ],
)
def test_json_without_a_segment_type_and_identifier_is_a_webhook_signal(event):
    d = draft(event)
    assert (d.source, d.event_type, d.anonymous_id, d.user_id, d.payload) == (
        "webhook",
        None,
        None,
        None,
        event,
    )


def test_tracking_api_call_supplies_a_missing_type():
    assert draft({"userId": "u", "event": "E"}, default_type="track").event_type == "track"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"type": "identify", "userId": "u", "traits": "ada"}, "traits"),
        ({"type": "track", "messageId": ["m"]}, "messageId"),
        ({"type": "track", "userId": True}, "userId"),
        ({"a": "nul \u0000 here"}, "NUL"),
        ({"\u0000": 1}, "NUL"),
        ({"type": "track", "anonymousId": "a", "integrations": {"x": "\u0000"}}, "NUL"),
        ({"type": "track", "anonymousId": "a", "sentAt": "x" * 40_000}, "larger"),
        ({"a": "x" * 40_000}, "larger"),
        (7, "object"),
    ],
)
def test_events_that_cannot_be_stored_are_invalid_with_a_reason(event, reason):
    with pytest.raises(InvalidEvent, match=reason):
        draft(event)
