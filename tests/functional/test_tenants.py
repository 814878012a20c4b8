"""Tenants stay apart, and logs keep their secrets."""

from __future__ import annotations

import logging

import orjson
import pytest

from tests.builders import identify, track
from tests.conftest import make_account
from tests.functional.test_admin_api import DEMO_RULE, wait_for_backfill


def bearer(account):
    return {"Authorization": f"Bearer {account.admin_token}"}


@pytest.fixture
def tenants(client, engine):
    """Account A with a rule, a lead, a conflict, a blocked identifier and a second key;
    account B with nothing."""
    a, b = make_account(engine), make_account(engine)
    rule = client.post(
        "/admin/rules", headers=bearer(a), json={**DEMO_RULE, "name": "Secret rule of A"}
    ).json
    wait_for_backfill(client, a, rule["id"])
    events = [
        identify("only-a@example.com", anonymousId="a-visitor"),
        track("A Private Event", messageId="a-conflict"),
        track("A Private Event", messageId="a-conflict", properties={"v": 2}),
    ]
    events += [identify(f"a{n}@example.com", anonymousId="a-kiosk") for n in range(7)]
    assert client.post(f"/webhook/{a.api_key}", data=orjson.dumps(events)).status_code == 200
    lead = client.get("/admin/leads?email=only-a@example.com", headers=bearer(a)).json
    key = client.post("/admin/keys", headers=bearer(a), json={"secret": "a-secret-123"}).json
    return a, b, {"rule": rule["id"], "lead": lead["id"], "key": key["id"]}


def test_every_admin_endpoint_with_another_accounts_token_shows_nothing_of_it(client, tenants):
    a, b, ids = tenants
    requests = [
        ("GET", "/admin/rules", None),
        ("POST", "/admin/rules", {"name": "B rule"}),
        ("GET", f"/admin/rules/{ids['rule']}", None),
        ("PUT", f"/admin/rules/{ids['rule']}", {"name": "hijack"}),
        ("PATCH", f"/admin/rules/{ids['rule']}", {"enabled": False}),
        ("GET", f"/admin/rules/{ids['rule']}/versions", None),
        ("POST", f"/admin/rules/{ids['rule']}/revert", {"version": 1}),
        ("POST", f"/admin/rules/{ids['rule']}/backfill/cancel", None),
        ("DELETE", f"/admin/rules/{ids['rule']}", None),
        ("POST", "/admin/rules/preview", {"rule": {"name": "p"}, "payload": track()}),
        ("GET", "/admin/queue", None),
        ("GET", "/admin/leads", None),
        ("GET", "/admin/leads?email=only-a@example.com", None),
        ("GET", f"/admin/leads/{ids['lead']}", None),
        ("GET", "/admin/usage", None),
        ("GET", "/admin/keys", None),
        ("DELETE", f"/admin/keys/{ids['key']}", None),
        ("GET", "/admin/conflicts", None),
        ("GET", "/admin/identity-reports", None),
    ]
    secrets_of_a = [
        "only-a@example.com",
        "Secret rule of A",
        "A Private Event",
        "a-conflict",
        "a-kiosk",
        a.api_key[:9],
    ]
    for method, path, body in requests:
        response = client.open(path, method=method, json=body, headers=bearer(b))
        assert response.status_code in (200, 201, 204, 404), (method, path)
        text = response.get_data(as_text=True)
        assert not [s for s in secrets_of_a if s in text], (method, path, text[:300])
        if f"/{ids['rule']}" in path or f"/{ids['lead']}" in path or f"/{ids['key']}" in path:
            assert response.status_code == 404, (method, path)
    rule = client.get(f"/admin/rules/{ids['rule']}", headers=bearer(a)).json
    assert (rule["name"], rule["enabled"]) == ("Secret rule of A", True)
    keys = client.get("/admin/keys", headers=bearer(a)).json
    assert all(k["revoked_at"] is None for k in keys)


def test_an_api_key_only_ever_stores_into_its_own_account(client, tenants):
    a, b, _ = tenants
    before_b = client.get("/admin/usage", headers=bearer(b)).json["used"]
    client.post(f"/webhook/{a.api_key}", data=orjson.dumps([track(), track()]))
    assert client.get("/admin/usage", headers=bearer(b)).json["used"] == before_b
    assert client.get("/admin/queue", headers=bearer(b)).json["total"] == 0


def test_no_log_line_holds_a_credential_and_none_at_info_holds_an_email(client, engine, caplog):
    caplog.set_level(logging.DEBUG)
    account = make_account(engine, secret="sup3r-secret-value")
    headers = {"X-Api-Secret": "sup3r-secret-value"}
    email = "private.person@example.com"
    client.post(
        f"/webhook/{account.api_key}",
        headers=headers,
        data=orjson.dumps(
            [track(anonymousId="log-visitor"), identify(email, anonymousId="log-visitor")]
        ),
    )
    client.post(f"/webhook/{account.api_key}", data=b"{broken", headers=headers)
    client.post(f"/webhook/{account.api_key}", data=orjson.dumps(track()))  # no secret: 401
    client.post(
        "/v1/batch",
        data=orjson.dumps({"batch": [track()]}),
        headers={**headers, "Authorization": _basic(account.api_key)},
    )
    admin = bearer(account)
    client.get(f"/admin/leads?email={email}", headers=admin)
    client.post("/admin/rules", headers=admin, json=DEMO_RULE)
    client.post("/admin/keys", headers=admin, json={"secret": "another-secret-1"})
    client.get("/admin/rules", headers={"Authorization": "Bearer " + account.admin_token + "x"})
    records = caplog.records
    assert records, "the session logged nothing: the check would be empty"
    for record in records:
        line = record.getMessage() + str(record.exc_info or "")
        for secret in (
            account.api_key,
            account.admin_token,
            "sup3r-secret-value",
            "another-secret-1",
        ):
            assert secret not in line, (record.name, line)
        if record.levelno >= logging.INFO:
            assert email not in line, (record.name, line)


def _basic(key):
    import base64

    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()
