"""What a new user meets first: suggested rules, answers to careless input, clear errors."""

from __future__ import annotations

import gzip

import orjson
import pytest

from receiver import refusals
from receiver.app import create_app
from receiver.config import Settings
from receiver.ingest import signature
from tests.builders import identify, track
from tests.conftest import make_account
from tests.functional.test_admin_api import auth, send, wait_for_backfill
from tests.functional.test_webhook import BOTH_STORES


def group(message_id):
    return {
        "type": "group",
        "userId": "u-ada",
        "groupId": "g-1",
        "messageId": message_id,
        "traits": {"name": "Analytical Engines Ltd", "email": "billing@engines.example"},
        "timestamp": "2026-11-01T11:00:00.000Z",
    }


def suggestion_for(client, account, event_type):
    groups = client.get("/admin/queue?per_page=500", headers=auth(account)).json["groups"]
    return next(g for g in groups if g["event_type"] == event_type)["suggested_rule"]


def test_a_groups_suggested_rule_maps_its_name_to_the_company_never_the_person(client, account):
    send(client, account, identify(userId="u-ada", anonymousId="a-ada"))
    send(client, account, group("m-g1"))
    suggested = suggestion_for(client, account, "group")
    assert suggested["fields"] == {"company": "traits.name"}
    rule = client.post("/admin/rules", json=suggested, headers=auth(account))
    assert rule.status_code == 201
    wait_for_backfill(client, account, rule.json["id"])
    send(client, account, group("m-g2"))
    lead = client.get("/admin/leads?email=ada@example.com", headers=auth(account)).json
    assert (lead["name"], lead["company"]) == ("Ada Lovelace", "Analytical Engines Ltd")


def test_a_tracks_suggestion_reads_properties_but_not_a_products_name(client, account):
    send(
        client,
        account,
        track(
            "Product Viewed",
            properties={"name": "Difference Engine", "email": "b@example.com", "title": "CTO"},
        ),
    )
    assert suggestion_for(client, account, "track")["fields"] == {
        "email": "properties.email",
        "title": "properties.title",
    }


def test_a_generic_webhooks_suggestion_offers_only_its_email(client, account):
    send(client, account, {"email": "c@example.com", "name": "Widget", "company": "X"})
    groups = client.get("/admin/queue", headers=auth(account)).json["groups"]
    webhook = next(g for g in groups if g["source"] == "webhook")
    assert webhook["suggested_rule"]["fields"] == {"email": "email"}


def test_a_webhook_refusal_says_whether_the_key_is_missing_unknown_or_an_admin_token(
    client, account
):
    body = orjson.dumps(track())
    missing = client.post("/v1/batch", data=body)
    assert (missing.status_code, missing.json["message"]) == (401, refusals.NO_API_KEY)
    token = client.post(f"/webhook/{account.admin_token}", data=body)
    assert token.json["message"] == refusals.ADMIN_TOKEN_AS_API_KEY
    revoked = client.post(f"/webhook/{account.api_key[:-3]}abc", data=body)
    assert revoked.json["message"] == "Unknown or revoked API key."


def test_a_missing_secret_and_a_wrong_one_get_different_messages(client, engine):
    account = make_account(engine, secret="s3cret-value")
    url, body = f"/webhook/{account.api_key}", orjson.dumps(track())
    missing = client.post(url, data=body)
    assert (missing.status_code, missing.json["message"]) == (401, signature.NO_SECRET)
    wrong = client.post(url, data=body, headers={"X-Api-Secret": "not-the-secret"})
    assert (wrong.status_code, wrong.json["message"]) == (401, signature.WRONG_SECRET)
    right = client.post(url, data=body, headers={"X-Api-Secret": "s3cret-value"})
    assert right.status_code == 200


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, refusals.NO_ADMIN_TOKEN),
        ("Basic abc", refusals.NO_ADMIN_TOKEN),
        ("Bearer {api_key}", refusals.API_KEY_AS_ADMIN_TOKEN),
        ("Bearer nonsense", refusals.NOT_AN_ADMIN_TOKEN),
        ("Bearer {admin_token}x", "Unknown or revoked admin token."),
    ],
)
def test_an_admin_refusal_says_what_is_wrong_with_the_token(
    client, account, authorization, message
):
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(
            api_key=account.api_key, admin_token=account.admin_token
        )
    response = client.get("/admin/rules", headers=headers)
    assert (response.status_code, response.json["message"]) == (401, message)


def test_a_wrong_method_is_405_with_allow_and_a_message_naming_the_methods(client, account):
    response = client.get(f"/webhook/{account.api_key}")
    assert response.status_code == 405
    assert {"POST", "PUT", "PATCH"} <= set(response.headers["Allow"].split(", "))
    assert response.json["message"] == "GET is not allowed here: use PATCH or POST or PUT."


def test_an_unknown_path_is_a_json_404_without_werkzeugs_text(client):
    response = client.get("/nowhere")
    assert response.status_code == 404 and response.is_json
    assert "manually" not in response.json["message"]
    assert "/openapi.json" in response.json["message"]


def test_a_413_states_the_limit(database_url):
    app = create_app(Settings(database_url=database_url, max_body_bytes=1_000))
    response = app.test_client().post("/webhook/rk_1_" + "a" * 30, data=b" " * 2_000)
    assert response.status_code == 413
    assert "1000 bytes" in response.json["message"]


def test_a_204_has_no_content_type(client, account):
    rule = client.post("/admin/rules", json={"name": "r"}, headers=auth(account)).json
    response = client.delete(f"/admin/rules/{rule['id']}", headers=auth(account))
    assert response.status_code == 204 and "Content-Type" not in response.headers


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_an_admin_body_not_sent_as_json_is_415_saying_to_send_json(client, account, content_type):
    headers = auth(account) | ({"Content-Type": content_type} if content_type else {})
    response = client.post("/admin/rules", data=b'{"name": "Demo"}', headers=headers)
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json["message"]
    assert client.get("/admin/rules", headers=auth(account)).json == []


def test_a_new_key_without_a_body_needs_no_content_type(client, account):
    assert client.post("/admin/keys", headers=auth(account)).status_code == 201


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ({"conditions": [{"field": "a", "op": "gt", "value": "abc"}]}, "conditions", "number"),
        ({"conditions": [{"field": "a", "op": "lte", "value": True}]}, "conditions", "number"),
        ({"conditions": [{"field": "a", "op": "in", "value": "x"}]}, "conditions", "list"),
        ({"conditions": [{"field": "a", "op": "contains", "value": 3}]}, "conditions", "string"),
        ({"conditions": [{"field": "a", "op": "matches", "value": "(a"}]}, "conditions", "RE2"),
        ({"event_type": "trak"}, "event_type", "Segment's types"),
    ],
)
def test_a_rule_that_could_never_match_is_422_saying_why(client, account, rule, field, words):
    response = client.post("/admin/rules", json={"name": "r", **rule}, headers=auth(account))
    assert response.status_code == 422
    assert words in str(response.json["errors"][field])


def test_a_rule_with_gt_maps_a_number_sent_as_a_string(client, account):
    rule = {
        "name": "Big teams",
        "event_name": "Form Submitted",
        "conditions": [{"field": "properties.employees", "op": "gt", "value": 100}],
        "signal": {"name": "Big Team", "score": 5},
    }
    preview = client.post(
        "/admin/rules/preview",
        json={"rule": rule, "payload": track("Form Submitted", properties={"employees": "250"})},
        headers=auth(account),
    )
    assert preview.status_code == 200 and preview.json["matches"] is True


@BOTH_STORES
def test_an_integer_past_64_bits_is_stored_and_shown_exactly(client, account):
    big = 123456789012345678901234567890
    body = orjson.dumps([identify("big@example.com", anonymousId="a-big")])
    body = body.replace(b'"traits":{', b'"traits":{"n":%d,' % big)
    later = orjson.dumps(track(anonymousId="a-big", properties={"n": 1})).replace(
        b'"n":1', b'"n":%d' % (big + 1)
    )
    for sent in (body, later):
        assert client.post(f"/webhook/{account.api_key}", data=sent).status_code == 200
    lead = client.get("/admin/leads?email=big@example.com", headers=auth(account)).json
    numbers = {
        s["event_type"]: (s["payload"].get("traits") or s["payload"]["properties"])["n"]
        for s in lead["signals"]
    }
    assert numbers == {"identify": big, "track": big + 1}
    assert lead["traits"]["n"] == big


def alias(previous_id, user_id, message_id):
    return {
        "type": "alias",
        "previousId": previous_id,
        "userId": user_id,
        "messageId": message_id,
        "timestamp": "2026-11-01T10:06:00.000Z",
    }


@BOTH_STORES
def test_an_alias_previous_id_shows_once_in_the_leads_identities(client, account):
    send(client, account, track(anonymousId="a-prev"))
    send(client, account, alias("a-prev", "u-new", "m-alias"))
    send(client, account, alias("u-old", "u-new", "m-alias-2"))
    send(client, account, identify("alias@example.com", anonymousId=None, userId="u-new"))
    lead = client.get("/admin/leads?email=alias@example.com", headers=auth(account)).json
    assert [(i["kind"], i["value"]) for i in lead["identities"]] == [
        ("anonymous_id", "a-prev"),
        ("previous_id", "u-old"),
        ("user_id", "u-new"),
    ]


def test_a_gzip_body_is_read_decompressed(client, account):
    event = track()
    response = client.post(
        f"/webhook/{account.api_key}",
        data=gzip.compress(orjson.dumps({"batch": [event]})),
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert response.json["results"] == [{"status": "cold", "messageId": event["messageId"]}]


@pytest.mark.parametrize(
    ("body", "encoding", "status", "words"),
    [
        (b'{"type": "track"}', "gzip", 400, "not valid gzip"),
        (gzip.compress(b'{"type": "track"}')[:-12], "gzip", 400, "cut short"),
        (b'{"type": "track"}', "br", 415, "gzip"),
    ],
)
def test_a_body_that_cannot_be_decoded_says_why(client, account, body, encoding, status, words):
    response = client.post(
        f"/webhook/{account.api_key}", data=body, headers={"Content-Encoding": encoding}
    )
    assert response.status_code == status and words in response.json["message"]


def test_a_gzip_body_that_decompresses_past_the_limit_is_413(database_url):
    app = create_app(Settings(database_url=database_url, max_body_bytes=10_000))
    small = gzip.compress(b"[" + b" " * 1_000_000 + b"]")
    assert len(small) < 10_000
    response = app.test_client().post(
        "/webhook/rk_1_" + "a" * 30, data=small, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 413 and "10000 bytes" in response.json["message"]
