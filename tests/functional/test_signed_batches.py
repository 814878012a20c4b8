"""What a signature over a batch's first element may authorise (Segment's Webhooks
destination signs only that): the batch it came with, never a replay of a signed body at
the head of another, never a delete."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import orjson

from tests.builders import identify, track
from tests.conftest import make_account
from tests.functional.test_admin_api import auth

SECRET = "s3cret-s3cret"


def signed(raw: bytes) -> dict[str, str]:
    return {"X-Signature": hmac.new(SECRET.encode(), raw, hashlib.sha1).hexdigest()}


def now_event(**overrides):
    return track(timestamp=datetime.now(UTC).isoformat(), originalTimestamp=None, **overrides)


def post(client, account, raw: bytes, headers: dict[str, str]):
    return client.post(f"/webhook/{account.api_key}", data=raw, headers=headers)


def lead_of(client, account, email):
    return client.get(f"/admin/leads?email={email}", headers=auth(account))


def test_a_stored_signed_body_at_the_head_of_a_forged_batch_is_refused(client, engine):
    account = make_account(engine, secret=SECRET)
    victim = identify("victim@example.com", userId="victim", timestamp=None)
    assert post(client, account, orjson.dumps(victim), {"X-Api-Secret": SECRET}).status_code == 200
    head = orjson.dumps(now_event())
    assert post(client, account, head, signed(head)).status_code == 200  # Segment's delivery
    forged = b"[" + head + b"," + orjson.dumps(now_event()) + b","
    forged += orjson.dumps({"type": "delete", "userId": "victim", "messageId": "d-1"}) + b"]"
    response = post(client, account, forged, signed(head))
    assert response.status_code == 401 and "stored already" in response.json["message"]
    assert lead_of(client, account, "victim@example.com").status_code == 200


def test_a_first_element_signature_never_carries_out_a_delete(client, engine):
    account = make_account(engine, secret=SECRET)
    victim = identify("victim@example.com", userId="victim", timestamp=None)
    post(client, account, orjson.dumps(victim), {"X-Api-Secret": SECRET})
    head = orjson.dumps(now_event())
    body = b"[" + head + b"," + orjson.dumps({"type": "delete", "userId": "victim"}) + b"]"
    response = post(client, account, body, signed(head))
    assert response.status_code == 200
    assert [r["status"] for r in response.json["results"]] == ["cold", "invalid"]
    assert lead_of(client, account, "victim@example.com").status_code == 200
    # Signed over the whole body, the same delete is carried out.
    whole = orjson.dumps([{"type": "delete", "userId": "victim", "messageId": "d-2"}])
    assert post(client, account, whole, signed(whole)).json["results"][0]["status"] == "deleted"
    assert lead_of(client, account, "victim@example.com").status_code == 404


def test_a_first_element_dated_far_from_now_is_refused(client, engine):
    account = make_account(engine, secret=SECRET)
    head = orjson.dumps(track(timestamp="2020-01-01T00:00:00Z"))
    body = b"[" + head + b"," + orjson.dumps(now_event()) + b"]"
    response = post(client, account, body, signed(head))
    assert response.status_code == 401 and "too far from now" in response.json["message"]


def test_a_key_for_whole_body_signatures_refuses_first_element_ones(client, engine):
    account = make_account(engine)
    created = client.post(
        "/admin/keys",
        json={"secret": SECRET, "whole_body_signatures": True},
        headers=auth(account),
    ).json
    assert created["whole_body_signatures"] is True
    head = orjson.dumps(now_event())
    body = b"[" + head + b"," + orjson.dumps(now_event()) + b"]"
    path = f"/webhook/{created['api_key']}"
    refused = client.post(path, data=body, headers=signed(head))
    assert refused.status_code == 401 and "whole body only" in refused.json["message"]
    assert client.post(path, data=body, headers=signed(body)).status_code == 200
