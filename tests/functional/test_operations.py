"""CONTRACT section 8 and GET /admin/deliveries, through the Flask test client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from receiver import db, deliveries
from receiver.app import create_app
from receiver.config import Settings
from receiver.credentials import API_KEY_KIND, parse_credential
from receiver.models import deliveries_table
from tests.builders import identify, track
from tests.conftest import close_app, make_account
from tests.functional.test_admin_api import wait_for_backfill
from tests.functional.test_webhook import BOTH_STORES

TOO_LARGE = track(properties={"blob": "x" * 40_000})  # over the 32 KB of an event: invalid


def auth(account):
    return {"Authorization": f"Bearer {account.admin_token}"}


def samples(client, headers=None):
    """{(name, labels as a sorted tuple): value} of GET /metrics."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.data
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(found, name, **labels):
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def read_deliveries(client, app, account, **query):
    deliveries.writer_of(app).flush()
    response = client.get("/admin/deliveries", headers=auth(account), query_string=query)
    assert response.status_code == 200, response.json
    return response.json["deliveries"]


# X-Request-Id


def test_an_answer_without_a_request_id_gets_a_new_one(client):
    first = client.get("/healthz").headers["X-Request-Id"]
    second = client.get("/nowhere").headers["X-Request-Id"]
    assert len(first) == 32 and first != second


def test_a_sane_request_id_is_answered_as_sent(client):
    sent = "edge-7f3a:9 " + "x" * 116  # 128 printable characters, a space among them
    response = client.get("/healthz", headers={"X-Request-Id": sent})
    assert response.headers["X-Request-Id"] == sent


@pytest.mark.parametrize(
    "sent", ["x" * 129, "two\tparts", "caf\u00e9", "   ", "rk_1_abcdefghijklmnopqrstuvwxyz"]
)
def test_an_insane_request_id_is_replaced(client, sent):
    response = client.get("/healthz", headers={"X-Request-Id": sent})
    assert response.headers["X-Request-Id"] != sent
    assert len(response.headers["X-Request-Id"]) == 32


def test_a_refused_body_has_a_request_id_too(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 10
    response = client.post("/webhook/rk_1_x", data=b"x" * 100, headers={"X-Request-Id": "r-413"})
    assert response.status_code == 413 and response.headers["X-Request-Id"] == "r-413"


# /metrics


def test_metrics_count_requests_by_route_pattern_and_events_by_outcome(client, account):
    before = samples(client)
    client.post(f"/webhook/{account.api_key}", data=orjson.dumps([track(), TOO_LARGE]))
    client.get("/nowhere/at/all")
    after = samples(client)
    text = client.get("/metrics").get_data(as_text=True)
    route = "/webhook/<api_key>"
    assert value(after, "receiver_http_requests_total", route=route, status="200") == (
        value(before, "receiver_http_requests_total", route=route, status="200") + 1
    )
    assert value(after, "receiver_http_request_duration_seconds_count", route=route) > value(
        before, "receiver_http_request_duration_seconds_count", route=route
    )
    assert value(after, "receiver_http_requests_total", route="unmatched", status="404") >= 1
    for outcome in ("cold", "invalid"):
        assert value(after, "receiver_events_total", outcome=outcome) > value(
            before, "receiver_events_total", outcome=outcome
        )
    assert account.api_key[:12] not in text and "/nowhere" not in text
    assert "receiver_rehydrated_signals_total" in text


def test_metrics_need_the_token_when_one_is_set(settings):
    app = create_app(Settings(database_url=settings.database_url, metrics_token="m3trics-t0ken"))
    client = app.test_client()
    try:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "message" in wrong.json
        assert (
            client.get("/metrics", headers={"Authorization": "Bearer caf\u00e9"}).status_code == 401
        )
        right = client.get("/metrics", headers={"Authorization": "Bearer m3trics-t0ken"})
        assert right.status_code == 200 and b"receiver_http_requests_total" in right.data
    finally:
        close_app(app)


def test_a_store_failure_is_counted_by_its_class(client, monkeypatch):
    before = samples(client)

    def unavailable(*_args, **_kwargs):
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("down"))

    monkeypatch.setattr("receiver.api.health.engine_of", lambda _app: _Broken(unavailable))
    assert client.get("/readyz").status_code == 503
    after = samples(client)
    assert value(after, "receiver_store_unavailable_total", error="OperationalError") == (
        value(before, "receiver_store_unavailable_total", error="OperationalError") + 1
    )
    assert value(after, "receiver_http_requests_total", route="/readyz", status="503") >= 1


class _Broken:
    def __init__(self, fail):
        self.connect = fail


# GET /admin/deliveries


@BOTH_STORES
def test_deliveries_show_what_was_answered_per_event_newest_first(client, app, account):
    first = track("Plan Chosen")
    client.post(f"/webhook/{account.api_key}", data=orjson.dumps([first, TOO_LARGE]))
    client.post(f"/webhook/{account.api_key}", data=orjson.dumps(first))
    found = read_deliveries(client, app, account)
    assert [d["duplicates"] for d in found] == [1, 0]
    newest, oldest = found
    assert oldest["method"] == "POST" and oldest["status"] == 200
    assert (oldest["received"], oldest["stored"], oldest["duplicates"]) == (2, 1, 0)
    prefix = parse_credential(account.api_key, API_KEY_KIND).prefix
    assert oldest["path"] == f"/webhook/{prefix}…"
    assert oldest["results"][0] == {
        "status": "cold",
        "messageId": first["messageId"],
        "type": "track",
        "event": "Plan Chosen",
        "message": None,
    }
    assert oldest["results"][1]["status"] == "invalid" and oldest["results"][1]["message"]
    assert newest["results"][0]["status"] == "duplicate"
    assert datetime.fromisoformat(newest["received_at"]) > datetime.now(UTC) - timedelta(minutes=1)


def test_deliveries_keep_a_request_refused_for_its_secret_but_not_an_unknown_key(
    client, app, engine
):
    account = make_account(engine, secret="s3cret-enough")
    client.post(f"/webhook/{account.api_key}", data=orjson.dumps(track()))
    client.post(f"/webhook/{account.api_key}x", data=orjson.dumps(track()))
    client.post(f"/webhook/rk_{account.account_id}_unknownunknownunknown", data=b"{}")
    (refused,) = read_deliveries(client, app, account)
    assert refused["status"] == 401 and "secret" in refused["message"]
    assert refused["received"] == 1 and refused["results"] == []


def test_deliveries_hold_no_payload_and_no_key_in_full(client, app, account, engine):
    event = track(properties={"email": "kept.out@example.com"})
    client.post(f"/webhook/{account.api_key}", data=orjson.dumps(event))
    deliveries.writer_of(app).flush()
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(deliveries_table).where(deliveries_table.c.account_id == account.account_id)
        ).all()
    stored = repr([tuple(row) for row in rows])
    assert len(rows) == 1 and "kept.out" not in stored and account.api_key not in stored


def test_deliveries_of_another_account_are_not_shown(client, app, account, engine):
    other = make_account(engine)
    client.post(f"/webhook/{other.api_key}", data=orjson.dumps(track()))
    assert read_deliveries(client, app, account) == []


def test_deliveries_are_capped_per_account_and_by_age(client, app, engine, account):
    old = datetime.now(UTC) - timedelta(hours=25)
    rows = [
        deliveries.entry(account.account_id, old, "POST", "/webhook/x", 200, {"received": 1}),
        *(
            deliveries.entry(account.account_id, datetime.now(UTC), "POST", f"/{i}", 200, None)
            for i in range(5)
        ),
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(deliveries_table), rows)
    assert len(read_deliveries(client, app, account)) == 5  # the old one is not shown
    assert [d["path"] for d in read_deliveries(client, app, account, limit=2)] == ["/4", "/3"]
    db.run_transaction(
        engine,
        lambda s: deliveries.prune(s, account.account_id, datetime.now(UTC) - timedelta(days=1), 3),
    )
    with engine.connect() as connection:
        paths = connection.execute(
            sa.select(deliveries_table.c.path)
            .where(deliveries_table.c.account_id == account.account_id)
            .order_by(deliveries_table.c.id)
        ).scalars()
        assert list(paths) == ["/2", "/3", "/4"]


def test_the_writer_prunes_as_it_writes(settings, engine, monkeypatch):
    monkeypatch.setattr(deliveries, "PRUNE_EVERY_S", 0.0)
    account = make_account(engine)
    app = create_app(Settings(database_url=settings.database_url, delivery_log_per_account=3))
    client = app.test_client()
    try:
        for _ in range(5):
            client.post(f"/webhook/{account.api_key}", data=orjson.dumps(track()))
        assert len(read_deliveries(client, app, account)) == 3
    finally:
        close_app(app)


def test_deliveries_need_an_admin_token(client):
    assert client.get("/admin/deliveries").status_code == 401
    response = client.get("/admin/deliveries", headers={"Authorization": "Bearer x"})
    assert response.status_code == 401


def test_rehydration_and_backfills_are_counted(client, account):
    before = samples(client)
    visitor = "anon-counted"
    client.post(f"/webhook/{account.api_key}", data=orjson.dumps(track(anonymousId=visitor)))
    client.post(
        f"/webhook/{account.api_key}",
        data=orjson.dumps(identify("counted@example.com", anonymousId=visitor)),
    )
    client.post(f"/webhook/{account.api_key}", data=orjson.dumps(track("Backfilled")))
    rule = {"name": "Backfilled", "event_name": "Backfilled", "signal": {"name": "B", "score": 1}}
    created = client.post("/admin/rules", json=rule, headers=auth(account))
    assert created.status_code == 201
    wait_for_backfill(client, account, created.json["id"])
    after = samples(client)
    # The stored track; the identify is placed on its lead as it is stored, not moved.
    assert value(after, "receiver_rehydrated_signals_total") == (
        value(before, "receiver_rehydrated_signals_total") + 1
    )
    assert value(after, "receiver_backfill_signals_mapped_total") >= (
        value(before, "receiver_backfill_signals_mapped_total") + 1
    )
    assert value(after, "receiver_backfill_signals_scanned_total") > value(
        before, "receiver_backfill_signals_scanned_total"
    )


def test_a_delivery_log_of_zero_hours_records_nothing(settings, engine):
    account = make_account(engine)
    app = create_app(Settings(database_url=settings.database_url, delivery_log_hours=0))
    client = app.test_client()
    try:
        assert (
            client.post(f"/webhook/{account.api_key}", data=orjson.dumps(track())).status_code
            == 200
        )
        assert deliveries.writer_of(app).flush() == 0
        assert read_deliveries(client, app, account) == []
    finally:
        close_app(app)


def test_deliveries_keep_a_request_refused_for_its_origin(client, app, account):
    created = client.post(
        "/admin/keys",
        json={"kind": "browser", "allowed_origins": ["https://www.acme.example"]},
        headers=auth(account),
    ).json
    response = client.post(
        f"/webhook/{created['api_key']}",
        data=orjson.dumps(track()),
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    (refused,) = read_deliveries(client, app, account)
    assert refused["status"] == 403
