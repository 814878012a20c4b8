"""Whatever a sender throws at the receiver: a clear 4xx JSON message, never a 5xx, nothing
stored."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest
import sqlalchemy as sa

from tests.builders import track
from tests.conftest import make_account

EVENT = orjson.dumps(track())

BAD_BODIES = {
    "malformed": b"{type: track}",
    "truncated": EVENT[:-7],
    "invalid utf-8": b'{"type": "track", "event": "caf\xe9"}',
    "lone surrogate": b'{"type": "track", "event": "\\udc00"}',
    "nan": b'{"type": "track", "anonymousId": "a", "properties": {"x": NaN}}',
    "infinity": b'{"type": "track", "anonymousId": "a", "properties": {"x": -Infinity}}',
    "overflowing number": b'{"type": "track", "anonymousId": "a", "properties": {"x": 1e999}}',
    "deep nesting": b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "nesting past the serializer": b'{"a": ' + b"[" * 300 + b"]" * 300 + b"}",
    "top-level string": b'"track"',
    "top-level number": b"42",
    "top-level null": b"null",
    "empty body": b"",
    "empty array": b"[]",
    "empty batch": b'{"batch": []}',
    "array of scalars": orjson.dumps([1] * 100_000),
    "too many events": orjson.dumps([{"n": n} for n in range(10_001)]),
    "messageId is an object": b'{"type": "track", "anonymousId": "a", "messageId": {"x": 1}}',
    "userId is a boolean": b'{"type": "identify", "userId": true}',
    "traits is a string": b'{"type": "identify", "userId": "u", "traits": "ada"}',
    "properties is a list": b'{"type": "track", "userId": "u", "properties": [1]}',
    "null byte in a value": b'{"type": "track", "anonymousId": "a", "event": "x\\u0000y"}',
    "null byte in a key": b'{"type": "track", "anonymousId": "a", "properties": {"\\u0000": 1}}',
    "null byte in a delivery field": b'{"type": "track", "anonymousId": "a", "sentAt": "\\u0000"}',
    "enormous string": orjson.dumps(track(properties={"blob": "x" * 200_000})),
}


def signal_count(engine, account_id):
    with engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT count(*) FROM signals WHERE account_id = :a"), {"a": account_id}
        ).scalar_one()


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_body_is_a_4xx_with_a_message_and_stores_nothing(client, account, engine, name):
    response = client.post(f"/webhook/{account.api_key}", data=BAD_BODIES[name])
    assert 400 <= response.status_code < 500, response.status_code
    assert response.is_json and response.json["message"]
    assert signal_count(engine, account.account_id) == 0


def test_body_over_sixteen_megabytes_is_413(client, account, engine):
    response = client.post(f"/webhook/{account.api_key}", data=b"[" + b" " * (16 << 20) + b"]")
    assert response.status_code == 413 and response.json["message"]
    assert signal_count(engine, account.account_id) == 0


@pytest.mark.parametrize(
    "key",
    [
        "..%2F..%2Fetc%2Fpasswd",
        "rk_1_%27%3B%20DROP%20TABLE%20signals%3B--",
        "rk_1_aaaaaaaaaaaaaaaaaaaaaaaaaaaa%00",
        "ra_1_aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "rk_99999999999999999999_aaaaaaaaaaaaaaaaaaaa",
        "%F0%9F%94%91" * 50,
        "x" * 5_000,
    ],
)
def test_unknown_and_malformed_keys_are_refused(client, key):
    response = client.post(f"/webhook/{key}", data=EVENT)
    assert response.status_code in (401, 404)
    assert response.is_json and response.json["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Api-Secret": ""},
        {"X-Api-Secret": "s3cret "},
        {"X-Signature": "0" * 40},
        {"X-Signature": "not hex at all"},
        {"X-Segment-Signature": ""},
        {"X-Signature": hmac.new(b"wrong", EVENT, hashlib.sha1).hexdigest()},
    ],
)
def test_wrong_or_missing_secrets_are_401_and_store_nothing(client, engine, headers):
    account = make_account(engine, secret="s3cret")
    response = client.post(f"/webhook/{account.api_key}", data=EVENT, headers=headers)
    assert response.status_code == 401 and response.json["message"]
    assert signal_count(engine, account.account_id) == 0


@pytest.mark.parametrize(
    "rule",
    [
        {"name": "x", "conditions": [{"field": "__class__.__init__", "op": "exists"}]},
        {"name": "x", "conditions": [{"field": "a." * 40 + "b", "op": "exists"}]},
        {"name": "x", "conditions": [{"field": "../../etc", "op": "equals", "value": 1}]},
        {"name": "x", "conditions": [{"field": "a", "op": "matches", "value": "(a+)+$" * 500}]},
        {"name": "x", "conditions": [{"field": "a", "op": "matches", "value": "(?P<x>a)(?P=x)"}]},
        {"name": "x", "conditions": [{"field": "a", "op": "matches", "value": 5}]},
        {"name": "x", "fields": {"email": "a\u0000b"}},
        {"name": "\u0000"},
        {"name": "x", "conditions": "all"},
        {"name": "x", "priority": 10**30},
    ],
)
def test_hostile_rules_are_refused_or_harmless(client, account, rule):
    headers = {"Authorization": f"Bearer {account.admin_token}"}
    response = client.post("/admin/rules", json=rule, headers=headers)
    assert response.status_code in (201, 400, 422), response.status_code
    assert response.is_json
    if response.status_code == 201:  # stored as data, never evaluated as code
        preview = client.post(
            "/admin/rules/preview", headers=headers, json={"rule": rule, "payload": track()}
        )
        assert preview.status_code == 200 and preview.json["matches"] is False
    else:
        assert response.json["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"{bad",
        b"[]",
        b'"x"',
        b'{"rule": 5, "payload": []}',
        b'{"rule": {"name": "x"}, "payload": {"\\u0000": 1}}',
    ],
)
def test_hostile_admin_bodies_are_4xx(client, account, body):
    headers = {"Authorization": f"Bearer {account.admin_token}", "Content-Type": "application/json"}
    for path in ["/admin/rules", "/admin/rules/preview", "/admin/keys"]:
        response = client.post(path, data=body, headers=headers)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert response.is_json and response.json["message"]


def test_an_unknown_key_is_refused_before_its_body_is_parsed(client, monkeypatch):
    """A made-up key with a 16 MB body: one lookup, no parse (which cost 600 MB of a worker)."""
    from receiver.ingest import receive

    def no_parse(*_args, **_kwargs):
        raise AssertionError("the body was parsed")

    monkeypatch.setattr(receive, "parse_events", no_parse)
    body = b"[" + b",".join([b'{"type": "track", "anonymousId": "a"}'] * 400_000) + b"]"
    response = client.post("/webhook/rk_1_madeupmadeupmadeupmadeup00", data=body)
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/v1/nonsense", "/webhook/{key}/v1/nonsense"])
def test_an_unknown_tracking_call_is_401_until_the_key_is_known(client, account, path):
    body = orjson.dumps({"type": "track", "anonymousId": "a", "event": "E"})
    made_up = "rk_1_madeupmadeupmadeupmadeup00"
    auth = {"Authorization": "Basic " + base64.b64encode(f"{made_up}:".encode()).decode()}
    assert client.post(path.format(key=made_up), data=body, headers=auth).status_code == 401
    real = {"Authorization": "Basic " + base64.b64encode(f"{account.api_key}:".encode()).decode()}
    known = client.post(path.format(key=account.api_key), data=body, headers=real)
    assert known.status_code == 400 and "Unknown call" in known.json["message"]
