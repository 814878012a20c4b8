"""Ingestion (docs/reference.md) through the Flask test client, on Postgres (and SQLite where
marked)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import orjson
import pytest
import sqlalchemy as sa

from receiver import accounts, db
from tests.builders import identify, track
from tests.conftest import close_app, make_account

BOTH_STORES = pytest.mark.parametrize("database_url", ["postgres", "sqlite"], indirect=True)


def post(client, key, body, path="/webhook/{key}", **kwargs):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(path.format(key=key), data=data, **kwargs)


def basic(key):
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def signal_count(engine, account_id, **where):
    clauses = " ".join(f"AND {column} = :{column}" for column in where)
    with engine.connect() as connection:
        return connection.execute(
            sa.text(f"SELECT count(*) FROM signals WHERE account_id = :a {clauses}"),
            {"a": account_id, **where},
        ).scalar_one()


@BOTH_STORES
def test_one_segment_event_is_stored_cold_and_acknowledged(client, account, engine):
    event = track()
    response = post(client, account.api_key, event)
    assert response.status_code == 200
    assert response.json == {
        "received": 1,
        "stored": 1,
        "duplicates": 0,
        "results": [{"status": "cold", "messageId": event["messageId"]}],
    }
    assert signal_count(engine, account.account_id, source="segment") == 1


@BOTH_STORES
def test_redelivery_with_new_sent_at_is_a_duplicate(client, account, engine):
    event = track()
    post(client, account.api_key, event)
    redelivered = {**event, "sentAt": "2026-11-02T00:00:00Z", "_metadata": {"x": 1}}
    response = post(client, account.api_key, json.dumps(redelivered, indent=2).encode())
    assert response.json["results"] == [{"status": "duplicate", "messageId": event["messageId"]}]
    assert (response.json["stored"], response.json["duplicates"]) == (0, 1)
    assert signal_count(engine, account.account_id) == 1


def test_batch_results_are_per_event_in_order(client, account, engine):
    a, b = track(), track()
    oversized = track(properties={"blob": "x" * 40_000})
    response = post(client, account.api_key, [a, {"invoice": 1}, a, oversized, 3, b])
    assert response.status_code == 200
    assert [r["status"] for r in response.json["results"]] == [
        "cold",
        "stored",
        "duplicate",
        "invalid",
        "invalid",
        "cold",
    ]
    assert "32 KB" in response.json["results"][3]["message"]
    assert (response.json["received"], response.json["stored"], response.json["duplicates"]) == (
        6,
        3,
        1,
    )


def test_batch_envelope_and_snake_case_are_understood(client, account, engine):
    event = {
        "type": "track",
        "event": "Trial Started",
        "anonymous_id": "anon-snake",
        "message_id": "m-snake",
        "properties": {},
    }
    response = post(client, account.api_key, {"batch": [event], "sentAt": "2026-11-01T00:00Z"})
    assert response.json["results"] == [{"status": "cold", "messageId": "m-snake"}]
    assert (
        signal_count(
            engine, account.account_id, anonymous_id="anon-snake", event_name="Trial Started"
        )
        == 1
    )


def test_generic_json_is_a_webhook_signal(client, account, engine):
    response = post(
        client, account.api_key, {"event": "invoice.paid", "id": 9}, content_type="text/plain"
    )
    assert response.json["results"] == [{"status": "stored", "messageId": None}]
    assert signal_count(engine, account.account_id, source="webhook") == 1


def test_json_with_segment_ids_but_no_segment_type_is_stored_as_a_webhook_signal(
    client, account, engine
):
    # A 400 would lose these for good: Segment does not retry one.
    batch = [
        {"type": "order.created", "userId": "u1", "total": 5},
        {"user_id": 5, "order": 1},
    ]
    response = post(client, account.api_key, batch)
    assert response.status_code == 200
    assert [r["status"] for r in response.json["results"]] == ["stored", "stored"]
    assert signal_count(engine, account.account_id, source="webhook") == 2


def test_same_message_id_with_other_content_is_stored_as_a_conflict(client, account, engine):
    first = track(messageId="same-id")
    second = {**first, "properties": {"plan": "enterprise"}}
    assert post(client, account.api_key, first).json["stored"] == 1
    assert post(client, account.api_key, second).json["stored"] == 1
    assert signal_count(engine, account.account_id, message_id="same-id") == 2


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/webhook/{key}/"),
        ("PUT", "/webhook/{key}"),
        ("PATCH", "/api/signal-staging/webhook/{key}"),
        ("POST", "/api/signal-staging/webhook/{key}/"),
        ("POST", "/webhook/{key}/v1/batch"),
    ],
)
def test_every_webhook_path_accepts_events(client, account, method, path):
    response = client.open(
        path.format(key=account.api_key), method=method, data=orjson.dumps(track())
    )
    assert response.status_code == 200, response.json


@pytest.mark.parametrize("path", ["/webhook", "/v1/batch", "/v1/track"])
def test_basic_auth_paths_accept_events(client, account, path):
    body = {"batch": [track()]} if path == "/v1/batch" else track()
    response = post(client, account.api_key, body, path=path, headers=basic(account.api_key))
    assert response.status_code == 200, response.json


def test_tracking_api_call_path_gives_the_type(client, account, engine):
    event = {"userId": "user-77", "event": "Invite Sent", "messageId": "m-77"}
    post(client, account.api_key, event, path="/v1/track", headers=basic(account.api_key))
    assert signal_count(engine, account.account_id, event_type="track", user_id="user-77") == 1


@BOTH_STORES
@pytest.mark.parametrize(
    "key", ["rk_999999_aaaaaaaaaaaaaaaaaaaaaaaaaaaa", "rk_1_%3Cscript%3E", "rk_1_'--", "nonsense"]
)
def test_unknown_or_malformed_key_is_401(client, key):
    response = post(client, key, track())
    assert response.status_code == 401
    assert "message" in response.json


def test_missing_basic_auth_is_401(client):
    assert post(client, "", track(), path="/v1/batch").status_code == 401


def test_revoked_key_is_401(client, account, engine):
    db.run_transaction(engine, lambda s: accounts.revoke_api_key(s, account.api_key, _now()))
    assert post(client, account.api_key, track()).status_code == 401


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


@pytest.fixture
def secret_account(engine):
    return make_account(engine, secret="s3cret")


def test_key_with_secret_needs_it(client, secret_account):
    assert post(client, secret_account.api_key, track()).status_code == 401
    wrong = post(client, secret_account.api_key, track(), headers={"X-Api-Secret": "nope"})
    assert wrong.status_code == 401
    right = post(client, secret_account.api_key, track(), headers={"X-Api-Secret": "s3cret"})
    assert right.status_code == 200


def test_batch_signed_over_its_first_element_is_accepted(client, secret_account):
    # Dated now: a first element dated far from now is no delivery of this batch.
    first = orjson.dumps(track(timestamp=datetime.now(UTC).isoformat(), originalTimestamp=None))
    body = b"[" + first + b"," + orjson.dumps(track()) + b"]"
    signature = hmac.new(b"s3cret", first, hashlib.sha1).hexdigest()
    response = post(client, secret_account.api_key, body, headers={"X-Signature": signature})
    assert response.status_code == 200
    bad = hmac.new(b"s3cret", body[:-1], hashlib.sha1).hexdigest()
    assert (
        post(client, secret_account.api_key, body, headers={"X-Signature": bad}).status_code == 401
    )


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"a": "\xff"}', "not valid JSON"),
        (b'{"a": NaN}', "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "JSON"),
        (b"42", "object or an array"),
        (b"[]", "Empty batch"),
        (b'[1, "two"]', "No valid event"),
        (b'{"type": "track", "messageId": "m", "properties": "x"}', "No valid event"),
    ],
)
def test_bad_bodies_are_400_with_a_message_and_store_nothing(
    client, account, engine, body, fragment
):
    response = post(client, account.api_key, body)
    assert response.status_code == 400
    assert fragment in response.json["message"]
    assert signal_count(engine, account.account_id) == 0


def test_body_over_the_limit_is_413(database_url):
    from receiver.app import create_app
    from receiver.config import Settings

    app = create_app(Settings(database_url=database_url, max_body_bytes=2048))
    key = make_account(db.engine_of(app)).api_key
    response = post(app.test_client(), key, [track() for _ in range(20)])
    assert response.status_code == 413
    assert "message" in response.json
    close_app(app)


def test_unreachable_store_is_503_with_retry_after():
    from receiver.app import create_app
    from receiver.config import Settings

    app = create_app(Settings(database_url="postgresql+psycopg://postgres@127.0.0.1:9/none"))
    response = post(app.test_client(), "rk_1_aaaaaaaaaaaaaaaaaaaaaaaaaaaa", track())
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert "message" in response.json
    assert app.test_client().get("/readyz").status_code == 503
    assert app.test_client().get("/healthz").status_code == 200


def test_probes_answer_when_the_store_is_up(client):
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json == {"status": "ready"}


LONG = "x" * 2_800  # past what a Postgres index entry holds


@BOTH_STORES
def test_overlong_identifiers_and_names_are_invalid_events_and_the_rest_are_stored(
    client, account, engine
):
    overlong = [
        track(anonymousId=LONG),
        track(userId=LONG),
        track(messageId=LONG),
        track(LONG),
        {"type": "group", "userId": "u", "messageId": "g", "groupId": LONG},
        {"type": "alias", "userId": "u", "messageId": "al", "previousId": LONG},
        identify(userId=LONG),
    ]
    response = post(client, account.api_key, [track(), *overlong, {"type": LONG, "n": 1}])
    assert response.status_code == 200, response.json
    statuses = [r["status"] for r in response.json["results"]]
    assert statuses == ["cold", *["invalid"] * len(overlong), "stored"]
    assert all("512 characters" in r["message"] for r in response.json["results"][1:-1])
    assert signal_count(engine, account.account_id) == 2


@BOTH_STORES
def test_a_time_out_of_utc_range_falls_back_to_arrival(client, account, engine):
    events = [
        track(timestamp="9999-12-31T23:00:00-05:00", originalTimestamp=None),
        track(timestamp=None, originalTimestamp="0001-01-01T00:00:00+05:00"),
        {"event": "invoice.paid", "timestamp": "9999-12-31T23:00:00-05:00"},
    ]
    response = post(client, account.api_key, events)
    assert response.status_code == 200, response.json
    assert response.json["stored"] == 3


def test_an_invalid_event_result_keeps_its_message_id(client, account):
    body = [track(messageId="keep-me", properties="not an object"), track()]
    response = post(client, account.api_key, body)
    assert response.json["results"][0] == {
        "status": "invalid",
        "messageId": "keep-me",
        "message": "`properties` must be an object.",
    }
