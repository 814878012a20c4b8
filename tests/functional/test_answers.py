"""Answers that say what happened: a type that is not Segment's, counts that add up, and
clocks that run fast."""

from __future__ import annotations

import logging

import orjson
from freezegun import freeze_time

from tests.builders import identify, track
from tests.functional.test_admin_api import auth


def post(client, account, body):
    return client.post(f"/webhook/{account.api_key}", data=orjson.dumps(body))


def test_a_type_that_is_not_segments_keeps_its_message_id_with_a_note(client, account):
    response = post(client, account, {"type": "trak", "userId": "u-1", "messageId": "m-trak"})
    assert response.status_code == 200
    (result,) = response.json["results"]
    assert result["status"] == "stored" and result["messageId"] == "m-trak"
    assert "'trak' is not one of Segment's" in result["note"]
    assert "note" not in post(client, account, track()).json["results"][0]


def test_the_body_log_line_counts_every_event_received(client, account, caplog):
    body = [track(), {"type": "track", "anonymousId": "a", "properties": "not an object"}]
    with caplog.at_level(logging.INFO, logger="receiver.api.webhook"):
        assert post(client, account, body).status_code == 200
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("received=")]
    assert line == "received=2 stored=1 duplicates=0 invalid=1 rejected=0 deleted=0"


def test_an_event_dated_far_in_the_future_does_not_pin_traits_or_last_seen(client, account):
    """Dated 9999, an identify counts as sent at most ten minutes after it arrived: an
    identify sent a quarter of an hour later wins, and last seen stays this year's."""

    def named(name, **overrides):
        traits = {"email": "m@example.com", "name": name}
        return identify("m@example.com", anonymousId="fut", traits=traits, **overrides)

    with freeze_time("2026-11-30 12:00:00"):
        post(client, account, named("Mallory", timestamp="9999-12-31T00:00:00Z"))
    with freeze_time("2026-11-30 12:15:00"):
        post(client, account, named("Margaret", timestamp=None))
    lead = client.get("/admin/leads?email=m@example.com", headers=auth(account)).json
    assert lead["name"] == "Margaret"
    assert lead["last_seen_at"].startswith("2026-11-30T12:15")
