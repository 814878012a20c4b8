"""What a new user meets first: suggested rules, answers to careless input, clear errors."""

from __future__ import annotations

from tests.builders import identify, track
from tests.functional.test_admin_api import auth, send, wait_for_backfill


def group(**overrides):
    return {
        "type": "group",
        "userId": overrides.pop("userId", "u-ada"),
        "groupId": "g-1",
        "messageId": overrides.pop("messageId", None) or f"m-group-{id(overrides)}",
        "traits": {"name": "Analytical Engines Ltd", "email": "billing@engines.example"},
        "timestamp": "2026-11-01T11:00:00.000Z",
        **overrides,
    }


def suggestion_for(client, account, event_type):
    groups = client.get("/admin/queue?per_page=500", headers=auth(account)).json["groups"]
    return next(g for g in groups if g["event_type"] == event_type)["suggested_rule"]


def test_a_groups_suggested_rule_maps_its_name_to_the_company_never_the_person(client, account):
    send(client, account, identify(userId="u-ada", anonymousId="a-ada"))
    send(client, account, group(messageId="m-g1"))
    suggested = suggestion_for(client, account, "group")
    assert suggested["fields"] == {"company": "traits.name"}
    rule = client.post("/admin/rules", json=suggested, headers=auth(account))
    assert rule.status_code == 201
    wait_for_backfill(client, account, rule.json["id"])
    send(client, account, group(messageId="m-g2"))
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
