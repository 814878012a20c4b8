"""Rules cannot harm ingestion: paths refused when saved, stored rules that never 5xx."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from receiver import db
from receiver.app import create_app
from receiver.config import Settings
from receiver.rules import engine as rules_engine
from receiver.rules import operators, service, worker
from tests.builders import track
from tests.conftest import TEST_SECRET_KEY, make_account
from tests.functional.test_admin_api import auth
from tests.unit.test_rule_safety import JSON, PATH


def save_unchecked(engine, account, rule):
    """A rule stored as it is, past the API's validation (as one saved by an older release)."""
    data = {"name": "unchecked", "conditions": [], "fields": {}, **rule}
    db.run_transaction(
        engine,
        lambda session: service.create_rule(session, account.account_id, data, datetime.now(UTC)),
    )


def test_a_path_with_superscript_digits_is_refused_when_saved(client, account):
    rule = {
        "name": "items",
        "conditions": [{"field": "properties.items.²", "op": "exists"}],
        "fields": {"sku": "properties.items.٣.sku"},
    }
    response = client.post("/admin/rules", json=rule, headers=auth(account))
    assert response.status_code == 422
    errors = response.json["errors"]
    assert "field" in errors["conditions"]["0"]
    assert "sku" in errors["fields"]


def test_a_stored_rule_with_superscript_digits_does_not_fail_ingestion(client, account, engine):
    save_unchecked(
        engine, account, {"conditions": [{"field": "properties.items.²", "op": "exists"}]}
    )
    body = [track(properties={"items": [1, 2, 3]}), track()]
    response = client.post(f"/webhook/{account.api_key}", data=orjson.dumps(body))
    assert response.status_code == 200
    assert response.json["stored"] + response.json.get("cold", 0) >= 1


# Postgres keeps no NUL in a JSON string: no rule of any release can hold one.
STORABLE_PATH = PATH.filter(lambda path: "\x00" not in path)


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=STORABLE_PATH, op=st.sampled_from(["exists", "equals", "contains", "gt", "in"]), props=JSON
)
def test_no_stored_rule_turns_an_event_into_a_5xx(client, engine, path, op, props):
    account = make_account(engine)
    value = None if op == "exists" else [1] if op == "in" else "x"
    save_unchecked(
        engine,
        account,
        {
            "conditions": [{"field": path, "op": op, "value": value}],
            "fields": {"email": path, "name": path, "company": path, "x": path},
            "signal": {"name": "s", "score": 1},
        },
    )
    body = [
        track(properties={"p": props, "a": {k: props for k in ["a", "b", "0", "²"]}}),
        {"type": "identify", "userId": "u-1", "traits": {"email": "ada@example.com"}},
    ]
    response = client.post(f"/webhook/{account.api_key}", data=orjson.dumps(body))
    assert response.status_code == 200, response.json


def many_conditions(n, op="exists"):
    return [{"field": f"properties.p{i}", "op": op} for i in range(n)]


def test_a_rule_with_more_conditions_than_the_cap_is_refused(client, account):
    ok = client.post(
        "/admin/rules",
        json={"name": "ok", "conditions": many_conditions(20)},
        headers=auth(account),
    )
    assert ok.status_code == 201
    over = {"name": "over", "conditions": many_conditions(21)}
    response = client.post("/admin/rules", json=over, headers=auth(account))
    assert response.status_code == 422
    assert "MAX_CONDITIONS_PER_RULE" in response.json["message"]
    assert response.json["errors"]["conditions"] == ["At most 20 conditions per rule."]
    patched = client.patch(
        f"/admin/rules/{ok.json['id']}",
        json={"conditions": many_conditions(21)},
        headers=auth(account),
    )
    assert patched.status_code == 422
    rules = client.get("/admin/rules", headers=auth(account)).json
    assert [len(r["conditions"]) for r in rules] == [20]


def test_an_account_cannot_have_more_rules_than_the_cap(postgres_url):
    app = create_app(
        Settings(database_url=postgres_url, secret_key=TEST_SECRET_KEY, max_rules_per_account=2)
    )
    try:
        client, account = app.test_client(), make_account(db.engine_of(app))
        statuses = [
            client.post("/admin/rules", json={"name": f"r{i}"}, headers=auth(account)).status_code
            for i in range(3)
        ]
        assert statuses == [201, 201, 422]
        third = client.post("/admin/rules", json={"name": "r3"}, headers=auth(account))
        assert "MAX_RULES_PER_ACCOUNT" in third.json["message"]
        other = make_account(db.engine_of(app))
        assert (
            client.post("/admin/rules", json={"name": "x"}, headers=auth(other)).status_code == 201
        )
    finally:
        worker.stop_all(timeout=30)
        db.engine_of(app).dispose()


def test_a_spent_budget_stores_the_rest_of_the_body_unmapped(client, account, engine, monkeypatch):
    rule = {"name": "all", "conditions": [{"field": "event", "op": "matches", "value": "."}]}
    assert client.post("/admin/rules", json=rule, headers=auth(account)).status_code == 201
    per_event = operators.PATTERN_COST + len("Signed Up") + rules_engine.RULE_COST
    monkeypatch.setattr(rules_engine, "EVALUATION_BUDGET", 3 * per_event)
    body = [track() for _ in range(8)]
    response = client.post(f"/webhook/{account.api_key}", data=orjson.dumps(body))
    assert response.status_code == 200
    assert [r["status"] for r in response.json["results"]] == ["cold"] * 8
    mapped = _mapped_by_message(engine, account)
    assert [mapped[e["messageId"]] for e in body] == [True] * 3 + [False] * 5


def test_a_tenants_costly_rules_spend_a_bounded_time_per_request(client, account):
    # 20 rules of 20 `matches` on a 30 KB string that all but the last condition of each hold:
    # without the text bound and the budget this body takes over 15 s here.
    conditions = [{"field": "properties.t", "op": "matches", "value": "a$"}] * 19
    for i in range(20):
        rule = {
            "name": f"r{i}",
            "conditions": [*conditions, {"field": "event", "op": "equals", "value": "no"}],
        }
        assert client.post("/admin/rules", json=rule, headers=auth(account)).status_code == 201
    body = [track(properties={"t": "a" * 30_000}) for _ in range(80)]
    started = time.monotonic()
    response = client.post(f"/webhook/{account.api_key}", data=orjson.dumps(body))
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < 6, elapsed


def _mapped_by_message(engine, account):
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT message_id, rule_id FROM signals WHERE account_id = :a"),
            {"a": account.account_id},
        )
        return {row.message_id: row.rule_id is not None for row in rows}


def test_lead_fields_a_rule_extracts_as_objects_or_numbers_do_not_fail_ingestion(
    client, account, engine
):
    rule = {
        "name": "odd fields",
        "fields": {
            "email": "properties.email",
            "name": "properties.obj",
            "company": "properties.list",
            "title": "properties.num",
        },
    }
    assert client.post("/admin/rules", json=rule, headers=auth(account)).status_code == 201
    properties = {"email": "odd@example.com", "obj": {"a": 1}, "list": [1, "x"], "num": 2**62}
    body = [track(properties=properties), track(properties={**properties, "num": 1.5})]
    response = client.post(f"/webhook/{account.api_key}", data=orjson.dumps(body))
    assert response.status_code == 200, response.json
