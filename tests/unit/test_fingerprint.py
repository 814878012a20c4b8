from receiver.ingest.fingerprint import canonical_json, content_hash


def digest(event):
    return content_hash(canonical_json(event))


BASE = {
    "type": "track",
    "event": "Signed Up",
    "messageId": "m-1",
    "anonymousId": "a-1",
    "properties": {"plan": "pro", "seats": 3},
    "originalTimestamp": "2026-11-01T10:00:00Z",
    "timestamp": "2026-11-01T10:00:00.2Z",
}


def test_key_order_does_not_change_the_hash():
    reordered = dict(reversed(list(BASE.items())))
    reordered["properties"] = {"seats": 3, "plan": "pro"}
    assert digest(reordered) == digest(BASE)


def test_delivery_time_fields_do_not_change_the_hash():
    redelivered = {
        **BASE,
        "sentAt": "2026-11-01T11:00:00Z",
        "receivedAt": "2026-11-01T11:00:01Z",
        "_metadata": {"bundled": ["x"]},
        "integrations": {"All": True},
        "writeKey": "wk",
        "sent_at": "x",
        "received_at": "y",
        "write_key": "z",
    }
    assert digest(redelivered) == digest(BASE)


def test_timestamp_is_delivery_time_when_original_timestamp_is_present():
    assert digest({**BASE, "timestamp": "2026-11-01T12:00:00Z"}) == digest(BASE)


def test_timestamp_is_content_without_original_timestamp():
    event = {k: v for k, v in BASE.items() if k != "originalTimestamp"}
    assert digest({**event, "timestamp": "2026-11-01T12:00:00Z"}) != digest(event)


def test_message_id_and_content_are_part_of_the_hash():
    assert digest({**BASE, "messageId": "m-2"}) != digest(BASE)
    assert digest({**BASE, "properties": {"plan": "free", "seats": 3}}) != digest(BASE)
