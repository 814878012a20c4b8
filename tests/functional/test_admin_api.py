"""The admin API (docs/reference.md) through the Flask test client, on Postgres."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa

from tests.builders import identify, track
from tests.conftest import make_account
from tests.functional.test_webhook import BOTH_STORES

DEMO_RULE = {
    "name": "Demo requests",
    "priority": 100,
    "source": "segment",
    "event_type": "track",
    "event_name": "Form Submitted",
    "conditions": [{"field": "properties.form_name", "op": "equals", "value": "demo"}],
    "fields": {
        "email": "properties.email",
        "company": "properties.company",
        "title": "properties.title",
        "plan": "properties.plan",
    },
    "signal": {"name": "Demo Requested", "score": 10},
}


def auth(account):
    return {"Authorization": f"Bearer {account.admin_token}"}


def send(client, account, *events):
    body = events[0] if len(events) == 1 else list(events)
    response = client.post(f"/webhook/{account.api_key}", data=orjson.dumps(body))
    assert response.status_code == 200, response.json
    return response.json


def form(email="ada@example.com", form_name="demo", **overrides):
    return track(
        "Form Submitted",
        properties={
            "form_name": form_name,
            "email": email,
            "company": "Analytical",
            "title": "CTO",
            "plan": "gold",
        },
        **overrides,
    )


def wait_for_backfill(client, account, rule_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rule = client.get(f"/admin/rules/{rule_id}", headers=auth(account)).json
        if rule["backfill"]["status"] == "done":
            return rule
        time.sleep(0.05)
    raise AssertionError(f"backfill not done: {rule['backfill']}")


@pytest.mark.parametrize(
    "path", ["/admin/rules", "/admin/queue", "/admin/leads", "/admin/usage", "/admin/keys"]
)
@pytest.mark.parametrize(
    "header", [None, "Bearer ra_1_aaaaaaaaaaaaaaaaaaaaaaaa", "Basic abc", "Bearer "]
)
def test_no_or_bad_admin_token_is_401(client, path, header):
    headers = {"Authorization": header} if header else {}
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.json["message"]


def test_rule_crud_keeps_created_at_and_counts_versions(client, account):
    created = client.post("/admin/rules", json=DEMO_RULE, headers=auth(account))
    assert created.status_code == 201
    rule = created.json
    assert {k: rule[k] for k in DEMO_RULE} == DEMO_RULE
    assert rule["version"] == 1
    rule_id = rule["id"]
    listed = client.get("/admin/rules", headers=auth(account)).json
    assert [r["id"] for r in listed] == [rule_id]
    patched = client.patch(
        f"/admin/rules/{rule_id}", json={"priority": 5}, headers=auth(account)
    ).json
    assert (patched["priority"], patched["version"], patched["name"]) == (5, 2, DEMO_RULE["name"])
    assert patched["created_at"] == rule["created_at"]
    assert patched["updated_at"] >= rule["updated_at"]
    replaced = client.put(
        f"/admin/rules/{rule_id}", json={"name": "Only a name"}, headers=auth(account)
    ).json
    assert (replaced["name"], replaced["conditions"], replaced["version"]) == ("Only a name", [], 3)
    assert client.delete(f"/admin/rules/{rule_id}", headers=auth(account)).status_code == 204
    assert client.get(f"/admin/rules/{rule_id}", headers=auth(account)).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "x", "conditions": [{"field": "a", "op": "like", "value": 1}]}, "conditions"),
        (
            {"name": "x", "conditions": [{"field": "a", "op": "matches", "value": "(("}]},
            "conditions",
        ),
        (
            {"name": "x", "conditions": [{"field": "a..b", "op": "equals", "value": 1}]},
            "conditions",
        ),
        ({"name": "x", "conditions": [{"field": "a", "op": "in", "value": "x"}]}, "conditions"),
        ({"name": "x", "fields": {"email": "bad path"}}, "fields"),
        ({"name": "x", "fields": {"1bad": "a.b"}}, "fields"),
        ({"name": "x", "source": "carrier-pigeon"}, "source"),
        ({"name": "x", "signal": {"score": "high"}}, "signal"),
    ],
)
def test_invalid_rules_are_422_with_field_errors(client, account, body, field):
    response = client.post("/admin/rules", json=body, headers=auth(account))
    assert response.status_code == 422
    assert response.json["message"]
    assert field in response.json["errors"]


def test_another_accounts_rules_leads_and_keys_are_404(client, account, engine):
    other = make_account(engine)
    rule_id = client.post("/admin/rules", json=DEMO_RULE, headers=auth(account)).json["id"]
    send(client, account, identify("mine@example.com"))
    lead_id = client.get("/admin/leads?email=mine@example.com", headers=auth(account)).json["id"]
    key_id = client.get("/admin/keys", headers=auth(account)).json[0]["id"]
    for method, path in [
        ("GET", f"/admin/rules/{rule_id}"),
        ("PATCH", f"/admin/rules/{rule_id}"),
        ("PUT", f"/admin/rules/{rule_id}"),
        ("DELETE", f"/admin/rules/{rule_id}"),
        ("GET", f"/admin/leads/{lead_id}"),
        ("GET", "/admin/leads?email=mine@example.com"),
        ("DELETE", f"/admin/keys/{key_id}"),
    ]:
        body = {"name": "stolen"} if method in ("PUT", "PATCH") else None
        response = client.open(path, method=method, json=body, headers=auth(other))
        assert response.status_code == 404, (method, path)
        assert "mine@example.com" not in response.get_data(as_text=True)
    assert client.get("/admin/rules", headers=auth(other)).json == []
    assert (
        client.get(f"/admin/rules/{rule_id}", headers=auth(account)).json["name"]
        == (DEMO_RULE["name"])
    )


def test_form_submitted_with_email_creates_the_lead_and_rehydrates(client, account, engine):
    client.post("/admin/rules", json=DEMO_RULE, headers=auth(account))
    send(client, account, track(anonymousId="visitor"), track(anonymousId="visitor"))
    response = send(client, account, form(anonymousId="visitor"))
    assert response["results"][0]["status"] == "stored"
    lead = client.get("/admin/leads?email=ada@example.com", headers=auth(account)).json
    assert (lead["company"], lead["title"], lead["signal_count"], lead["score"]) == (
        "Analytical",
        "CTO",
        3,
        10,
    )
    newest = lead["signals"][0]
    assert (newest["mapped_name"], newest["score"]) == ("Demo Requested", 10)
    assert newest["mapped_fields"]["plan"] == "gold"  # a custom field, kept on the signal
    assert [i["value"] for i in lead["identities"]] == ["visitor"]


def test_form_with_another_form_name_is_not_mapped(client, account):
    client.post("/admin/rules", json=DEMO_RULE, headers=auth(account))
    send(client, account, form(form_name="newsletter"))
    assert client.get("/admin/leads", headers=auth(account)).json["total"] == 0
    queue = client.get("/admin/queue", headers=auth(account)).json
    assert [(g["event_name"], g["count"]) for g in queue["groups"]] == [("Form Submitted", 1)]


@BOTH_STORES
def test_a_new_groups_sample_is_its_first_event_in_a_body_with_identities(client, account):
    # A body with an identify is stored set-based with its identity effects; its queue
    # groups' samples are still each group's first event.
    tracks = [track("Plan Chosen", properties={"step": n}) for n in range(3)]
    send(client, account, track("Plan Chosen", properties={"step": 0}) | {"type": "page"})
    send(client, account, identify("s@example.com"), *tracks, identify("t@example.com"))
    groups = client.get("/admin/queue", headers=auth(account)).json["groups"]
    chosen = next(g for g in groups if g["event_name"] == "Plan Chosen" and g["count"] == 3)
    assert chosen["sample"]["properties"] == {"step": 0}
    assert chosen["sample"]["messageId"] == tracks[0]["messageId"]


def test_queue_groups_by_count_with_sample_and_suggested_rule(client, account):
    send(client, account, *[track("Pricing Viewed") for _ in range(3)])
    send(
        client,
        account,
        identify(
            "q@example.com", traits={"email": "q@example.com", "company": "Q", "title": "CEO"}
        ),
    )
    send(client, account, {"invoice": "paid"})
    queue = client.get("/admin/queue?per_page=2", headers=auth(account)).json
    assert queue["total"] == 3 and len(queue["groups"]) == 2
    top = queue["groups"][0]
    assert (top["source"], top["event_type"], top["event_name"], top["count"]) == (
        "segment",
        "track",
        "Pricing Viewed",
        3,
    )
    assert top["sample"]["event"] == "Pricing Viewed" and top["first_seen"] <= top["last_seen"]
    second = client.get("/admin/queue?per_page=2&page=2", headers=auth(account)).json["groups"]
    identify_group = next(g for g in queue["groups"] + second if g["event_type"] == "identify")
    suggested = identify_group["suggested_rule"]
    assert suggested["fields"] == {
        "email": "traits.email",
        "company": "traits.company",
        "title": "traits.title",
    }  # the sample has no name
    assert (suggested["source"], suggested["event_type"]) == ("segment", "identify")
    created = client.post("/admin/rules", json=suggested, headers=auth(account))
    assert created.status_code == 201


def test_bad_query_arguments_are_422(client, account):
    response = client.get("/admin/queue?per_page=0", headers=auth(account))
    assert response.status_code == 422 and "per_page" in response.json["errors"]


def test_backfill_maps_thousands_of_queued_signals_with_identity_effects(client, account, engine):
    visitors = [f"bf-{n}" for n in range(40)]
    send(client, account, *[track(anonymousId=v) for v in visitors])
    forms = [form(email=f"{v}@example.com", anonymousId=v) for v in visitors]
    others = [form(form_name="newsletter") for _ in range(60)]
    noise = [track("Page Scrolled") for _ in range(2_900)]
    for start in range(0, 3_000, 1_000):
        send(client, account, *(forms + others + noise)[start : start + 1_000])
    rule = client.post("/admin/rules", json=DEMO_RULE, headers=auth(account)).json
    done = wait_for_backfill(client, account, rule["id"])
    assert done["backfill"]["scanned"] == 3_040 and done["backfill"]["mapped"] == 40
    leads = client.get("/admin/leads?per_page=100", headers=auth(account)).json
    assert leads["total"] == 40
    assert {lead["signal_count"] for lead in leads["leads"]} == {2}  # the form and the track
    queue = {
        g["event_name"]: g["count"]
        for g in client.get("/admin/queue", headers=auth(account)).json["groups"]
    }
    assert queue == {"Page Scrolled": 2_900, "Form Submitted": 60, "Signed Up": 40}
    again = client.patch(
        f"/admin/rules/{rule['id']}", json={"priority": 1}, headers=auth(account)
    ).json
    assert again["backfill"]["status"] == "done"  # a priority change maps nothing anew
    with engine.connect() as connection:
        cold = connection.execute(
            sa.text(
                "SELECT count(*) FROM signals WHERE account_id = :a AND is_cold AND "
                "anonymous_id LIKE 'bf-%'"
            ),
            {"a": account.account_id},
        ).scalar_one()
    assert cold == 0


def test_a_backfill_keeps_the_provenance_of_signals_already_on_their_lead(client, account, engine):
    """A track moved onto its lead by an identify keeps that identify as what linked it, and
    a group call on the lead keeps none, when a rule with lead fields maps them later."""
    send(client, account, form(anonymousId="prov-1"))
    linked = send(client, account, identify("ada@example.com", anonymousId="prov-1"))
    send(
        client,
        account,
        {
            "type": "group",
            "groupId": "g-1",
            "anonymousId": "prov-1",
            "traits": {"name": "Analytical Engines Ltd"},
            "messageId": "prov-group",
        },
    )

    def provenance():
        with engine.connect() as connection:
            return dict(
                connection.execute(
                    sa.text(
                        "SELECT event_type, linked_by_signal_id FROM signals "
                        "WHERE account_id = :a AND event_type IN ('track', 'group')"
                    ),
                    {"a": account.account_id},
                ).all()
            )

    before = provenance()
    assert before["track"] is not None and before["group"] is None
    assert linked["results"][0]["status"] == "stored"
    for rule in (
        DEMO_RULE,
        {"name": "Groups", "event_type": "group", "fields": {"company": "traits.name"}},
    ):
        created = client.post("/admin/rules", json=rule, headers=auth(account)).json
        wait_for_backfill(client, account, created["id"])
    assert provenance() == before


def test_preview_reports_match_extraction_and_queue_effect_storing_nothing(client, account):
    send(
        client,
        account,
        form("one@example.com"),
        form("two@example.com"),
        form("one@example.com", anonymousId="again"),
        form(form_name="other"),
    )
    body = {"rule": DEMO_RULE, "payload": form("ada@example.com")}
    preview = client.post("/admin/rules/preview", json=body, headers=auth(account)).json
    assert (preview["matches"], preview["mapped_name"], preview["score"]) == (
        True,
        "Demo Requested",
        10,
    )
    assert preview["fields"]["email"] == "ada@example.com"
    assert preview["queue"] == {
        "candidates": 4,
        "scanned": 4,
        "matches": 3,
        "leads_created": 2,
        "complete": True,
    }
    miss = client.post(
        "/admin/rules/preview",
        json={"rule": DEMO_RULE, "payload": form(form_name="x")},
        headers=auth(account),
    ).json
    assert miss["matches"] is False and miss["fields"] == {}
    assert client.get("/admin/rules", headers=auth(account)).json == []
    assert client.get("/admin/leads", headers=auth(account)).json["total"] == 0


def test_lead_by_id_has_identities_and_signals_newest_first(client, account):
    send(
        client,
        account,
        track(anonymousId="a-lead", timestamp="2026-11-01T00:00:00Z"),
        identify("byid@example.com", anonymousId="a-lead", userId="u-lead"),
    )
    by_email = client.get("/admin/leads?email=BYID@example.com", headers=auth(account)).json
    by_id = client.get(f"/admin/leads/{by_email['id']}", headers=auth(account)).json
    assert by_id == by_email
    assert {(i["kind"], i["value"]) for i in by_id["identities"]} == {
        ("anonymous_id", "a-lead"),
        ("user_id", "u-lead"),
    }
    times = [s["occurred_at"] for s in by_id["signals"]]
    assert times == sorted(times, reverse=True) and len(times) == 2
    assert (
        client.get("/admin/leads?email=none@example.com", headers=auth(account)).status_code == 404
    )


@BOTH_STORES
def test_lead_list_has_the_lead_schema_and_utc_times_on_both_stores(client, account):
    send(client, account, track(anonymousId="a-list"), track(anonymousId="a-list"))
    send(client, account, identify("list@example.com", anonymousId="a-list"))
    send(client, account, identify("other@example.com", anonymousId="a-other"))
    listed = client.get("/admin/leads", headers=auth(account)).json
    by_email = {lead["email"]: lead for lead in listed["leads"]}
    assert listed["total"] == 2
    assert by_email["list@example.com"]["signal_count"] == 3
    assert by_email["other@example.com"]["signal_count"] == 1
    detail = client.get("/admin/leads?email=list@example.com", headers=auth(account)).json
    detail_only = {"identities", "merged_emails", "unlinked", "signals"}
    assert set(by_email["list@example.com"]) == set(detail) - detail_only
    times = [lead["last_seen_at"] for lead in listed["leads"]]
    times += [detail["created_at"], *(s["received_at"] for s in detail["signals"])]
    assert all(datetime.fromisoformat(t).utcoffset() == timedelta(0) for t in times), times


def test_usage_reports_the_month(client, engine):
    account = make_account(engine, signal_limit=50)
    send(client, account, track(), track())
    usage = client.get("/admin/usage", headers=auth(account)).json
    assert (usage["plan"], usage["limit"], usage["used"]) == ("test", 50, 2)
    assert usage["period_start"] < usage["period_end"]


def test_keys_list_prefixes_create_with_secret_rotate_and_revoke(client, account):
    keys = client.get("/admin/keys", headers=auth(account)).json
    assert len(keys) == 1 and account.api_key not in str(keys)
    assert account.api_key.startswith(keys[0]["prefix"])
    first = client.post("/admin/keys", json={"secret": "first-secret"}, headers=auth(account))
    second = client.post("/admin/keys", json={"secret": "second-secret"}, headers=auth(account))
    assert first.status_code == second.status_code == 201
    for created, secret in [(first.json, "first-secret"), (second.json, "second-secret")]:
        response = client.post(
            created["webhook_path"], data=orjson.dumps(track()), headers={"X-Api-Secret": secret}
        )
        assert response.status_code == 200
        assert client.post(created["webhook_path"], data=orjson.dumps(track())).status_code == 401
    revoked = client.delete(f"/admin/keys/{first.json['id']}", headers=auth(account))
    assert revoked.status_code == 204
    assert (
        client.post(
            first.json["webhook_path"],
            data=orjson.dumps(track()),
            headers={"X-Api-Secret": "first-secret"},
        ).status_code
        == 401
    )
    listed = {k["id"]: k for k in client.get("/admin/keys", headers=auth(account)).json}
    assert listed[first.json["id"]]["revoked_at"] is not None
    assert listed[second.json["id"]]["has_secret"] is True
    too_short = client.post("/admin/keys", json={"secret": "short"}, headers=auth(account))
    assert too_short.status_code == 422


def test_preview_of_a_payload_that_cannot_be_stored_names_the_field(client, account):
    body = {
        "rule": {"name": "r"},
        "payload": {"type": "identify", "userId": "u", "traits": "ada"},
    }
    response = client.post("/admin/rules/preview", json=body, headers=auth(account))
    assert response.status_code == 400
    assert response.json["message"] and "traits" in response.json["errors"]["payload"][0]


def test_conflicts_and_identity_reports_are_visible_to_admins(client, account):
    send(client, account, track(messageId="twice"), track(messageId="twice"))
    for n in range(7):
        send(client, account, identify(f"s{n}@example.com", anonymousId="kiosk-2"))
    conflicts = client.get("/admin/conflicts", headers=auth(account)).json
    assert [(c["message_id"], c["versions"]) for c in conflicts] == [("twice", 2)]
    reports = client.get("/admin/identity-reports", headers=auth(account)).json
    assert [(r["kind"], r["value"]) for r in reports] == [("anonymous_id", "kiosk-2")]


def test_openapi_document_covers_the_admin_api_and_the_webhook(client):
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    for path in [
        "/admin/rules",
        "/admin/rules/{rule_id}",
        "/admin/rules/preview",
        "/admin/queue",
        "/admin/leads",
        "/admin/leads/{lead_id}",
        "/admin/usage",
        "/admin/keys",
        "/admin/keys/{key_id}",
        "/webhook/{api_key}",
        "/v1/{call}",
    ]:
        assert path in spec["paths"], path
    assert "Rule" in spec["components"]["schemas"]
