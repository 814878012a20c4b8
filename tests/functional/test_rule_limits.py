"""Rules cannot harm ingestion: paths refused when saved, stored rules that never 5xx."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from receiver import db
from receiver.rules import service
from tests.builders import track
from tests.conftest import make_account
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


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=PATH, op=st.sampled_from(["exists", "equals", "contains", "gt", "in"]), props=JSON)
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
