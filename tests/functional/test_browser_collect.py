"""CONTRACT section 5 (and section 2's X-Api-Key) through the Flask test client: browser keys,
Analytics.js's paths and settings, CORS, the origin check, context.ip and the rate limit."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest
import sqlalchemy as sa

from receiver import db
from receiver.app import create_app
from tests.builders import track
from tests.functional.test_webhook import BOTH_STORES, basic, signal_count

SITE = "https://www.acme.example"
OTHER_SITE = "https://evil.example"


def admin(account):
    return {"Authorization": f"Bearer {account.admin_token}"}


def browser_key(client, account, origins=(SITE,)):
    response = client.post(
        "/admin/keys",
        json={"kind": "browser", "allowed_origins": list(origins)},
        headers=admin(account),
    )
    assert response.status_code == 201, response.json
    return response.json["api_key"]


def send(client, key, body, path="/v1/t", origin=SITE, **kwargs):
    headers = {**basic(key), **kwargs.pop("headers", {})}
    if origin is not None:
        headers["Origin"] = origin
    return client.post(
        path, data=orjson.dumps(body), content_type="text/plain", headers=headers, **kwargs
    )


@pytest.fixture
def client_with(settings):
    """A test client of an app with some settings changed."""
    apps = []

    def make(**changes):
        apps.append(create_app(replace(settings, **changes)))
        return apps[-1].test_client()

    yield make
    for app in apps:
        db.engine_of(app).dispose()


def payloads(engine, account_id):
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT payload FROM signals WHERE account_id = :a ORDER BY id"),
            {"a": account_id},
        ).scalars()
        return [row if isinstance(row, dict) else orjson.loads(row) for row in rows]


# --- browser keys -------------------------------------------------------------------------


def test_a_browser_key_is_listed_with_its_kind_and_normalised_origins(client, account):
    browser_key(client, account, ["HTTPS://WWW.Acme.example:443", "http://localhost:3000"])
    keys = client.get("/admin/keys", headers=admin(account)).json
    assert [(k["kind"], k["allowed_origins"], k["has_secret"]) for k in keys] == [
        ("server", None, False),
        ("browser", [SITE, "http://localhost:3000"], False),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "browser", "allowed_origins": ["https://acme.example/"]}, "allowed_origins"),
        ({"kind": "browser", "allowed_origins": ["acme.example"]}, "allowed_origins"),
        ({"kind": "browser", "allowed_origins": ["ftp://acme.example"]}, "allowed_origins"),
        ({"kind": "browser", "allowed_origins": ["https://a.example/x?y"]}, "allowed_origins"),
        ({"kind": "browser", "allowed_origins": []}, "allowed_origins"),
        ({"kind": "browser"}, "allowed_origins"),
        ({"kind": "browser", "allowed_origins": ["*"], "secret": "a-long-secret"}, "secret"),
        ({"allowed_origins": [SITE]}, "allowed_origins"),
        ({"kind": "public", "allowed_origins": [SITE]}, "kind"),
    ],
)
def test_an_invalid_browser_key_request_is_422_with_the_field(client, account, body, field):
    response = client.post("/admin/keys", json=body, headers=admin(account))
    assert response.status_code == 422
    assert field in response.json["errors"], response.json
    assert len(client.get("/admin/keys", headers=admin(account)).json) == 1


def test_a_browser_key_never_opens_admin_and_says_why(client, account):
    key = browser_key(client, account)
    response = client.get("/admin/usage", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401
    assert "API key" in response.json["message"]
    assert "admin token" in response.json["message"]


# --- the paths Analytics.js posts to -----------------------------------------------------


@BOTH_STORES
@pytest.mark.parametrize(
    ("path", "stored_type"),
    [
        ("/v1/t", "track"),
        ("/v1/p", "page"),
        ("/v1/i", "identify"),
        ("/v1/g", "group"),
        ("/v1/s", "screen"),
        ("/v1/a", "alias"),
    ],
)
def test_short_paths_store_their_call(client, account, engine, path, stored_type):
    event = track()
    del event["type"]
    response = send(client, account.api_key, event, path=path, origin=None)
    assert response.status_code == 200, response.json
    assert signal_count(engine, account.account_id, event_type=stored_type) == 1


@BOTH_STORES
def test_a_batch_with_its_write_key_in_the_body_is_stored(client, account, engine):
    key = browser_key(client, account)
    body = {"batch": [track(), track()], "writeKey": key, "sentAt": "2026-11-01T10:00:01Z"}
    response = client.post(
        "/v1/b", data=orjson.dumps(body), content_type="text/plain", headers={"Origin": SITE}
    )
    assert response.status_code == 200, response.json
    assert response.json["stored"] == 2
    assert response.headers["Access-Control-Allow-Origin"] == SITE


def test_one_event_with_its_write_key_in_the_body_is_stored(client, account, engine):
    key = browser_key(client, account)
    response = client.post("/v1/t", data=orjson.dumps({**track(), "writeKey": key}))
    assert response.status_code == 200
    assert signal_count(engine, account.account_id) == 1


def test_no_key_anywhere_is_401(client, account):
    assert client.post("/v1/t", data=orjson.dumps(track())).status_code == 401
    assert client.post("/v1/t", data=b"not json").status_code == 401


# --- CORS and the origin check -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/t", "/v1/b", "/v1/projects/rk_1_x/settings", "/v1/nope"])
def test_a_preflight_on_any_v1_path_is_204_with_the_cors_headers(client, path):
    response = client.options(
        path,
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-retry-count",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"content-type", "authorization", "x-retry-count"} <= allowed
    assert int(response.headers["Access-Control-Max-Age"]) > 0


def test_a_browser_key_from_an_origin_it_does_not_allow_is_403_and_stores_nothing(
    client, account, engine
):
    key = browser_key(client, account)
    response = send(client, key, {"batch": [track()]}, path="/v1/b", origin=OTHER_SITE)
    assert response.status_code == 403
    assert OTHER_SITE in response.json["message"]
    assert "Access-Control-Allow-Origin" not in response.headers
    assert signal_count(engine, account.account_id) == 0


def test_the_origin_check_holds_on_the_webhook_paths_too(client, account, engine):
    key = browser_key(client, account)
    response = client.post(
        f"/webhook/{key}", data=orjson.dumps(track()), headers={"Origin": OTHER_SITE}
    )
    assert response.status_code == 403
    assert signal_count(engine, account.account_id) == 0


def test_an_allowed_origin_gets_cors_headers_on_errors_too(client, account):
    key = browser_key(client, account)
    response = client.post("/v1/t", data=b"{", headers={**basic(key), "Origin": SITE})
    assert response.status_code == 400
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]


def test_a_browser_key_without_origin_is_served_as_usual(client, account, engine):
    key = browser_key(client, account)
    response = send(client, key, track(), origin=None)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert signal_count(engine, account.account_id) == 1


def test_a_browser_key_for_any_origin_takes_every_origin(client, account, engine):
    key = browser_key(client, account, ["*"])
    response = send(client, key, track(), origin=OTHER_SITE)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == OTHER_SITE


# --- settings ------------------------------------------------------------------------------


def test_settings_send_analytics_js_here_and_nowhere_else(client, account):
    key = browser_key(client, account)
    response = client.get(f"/v1/projects/{key}/settings", headers={"Origin": SITE})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    settings = response.json
    assert list(settings["integrations"]) == ["Segment.io"]
    segment = settings["integrations"]["Segment.io"]
    assert (segment["apiKey"], segment["apiHost"], segment["protocol"]) == (
        key,
        "localhost/v1",
        "http",
    )
    assert settings["metrics"]["sampleRate"] == 0
    assert settings["remotePlugins"] == [] and settings["enabledMiddleware"] == {}


def test_settings_from_another_origin_carry_no_cors_header(client, account):
    key = browser_key(client, account)
    response = client.get(f"/v1/projects/{key}/settings", headers={"Origin": OTHER_SITE})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_settings_hand_out_the_public_url(client_with, account):
    client = client_with(public_url="https://collect.acme.example/")
    key = browser_key(client, account)
    segment = client.get(f"/v1/projects/{key}/settings").json["integrations"]["Segment.io"]
    assert (segment["apiHost"], segment["protocol"]) == ("collect.acme.example/v1", "https")


def test_settings_of_unknown_revoked_or_server_keys_are_404(client, account):
    key = browser_key(client, account)
    key_id = client.get("/admin/keys", headers=admin(account)).json[-1]["id"]
    assert client.get(f"/v1/projects/{key}/settings").status_code == 200
    client.delete(f"/admin/keys/{key_id}", headers=admin(account))
    for unknown in (key, account.api_key, "rk_1_aaaaaaaaaaaaaaaaaaaaaaaa", "nonsense"):
        response = client.get(f"/v1/projects/{unknown}/settings")
        assert response.status_code == 404
        assert response.json["message"]


# --- context.ip ----------------------------------------------------------------------------


def test_context_ip_is_the_clients_address_and_not_part_of_the_hash(client, account, engine):
    event = track()
    first = send(client, account.api_key, event, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    again = send(client, account.api_key, event, environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert first.json["stored"] == 1 and again.json["duplicates"] == 1
    [payload] = payloads(engine, account.account_id)
    assert payload["context"]["ip"] == "203.0.113.7"
    assert payload["context"]["page"] == event["context"]["page"]


def test_a_context_ip_sent_is_kept(client, account, engine):
    event = track(context={"ip": "192.0.2.9"})
    send(client, account.api_key, event, path="/v1/track", origin=None)
    assert payloads(engine, account.account_id)[0]["context"] == {"ip": "192.0.2.9"}


def test_nothing_is_added_on_the_webhook_paths(client, account, engine):
    event = track()
    client.post(f"/webhook/{account.api_key}", data=orjson.dumps(event))
    assert payloads(engine, account.account_id)[0]["context"] == event["context"]


def test_x_forwarded_for_is_trusted_only_for_the_hops_set(client_with, account, engine):
    forwarded = {"X-Forwarded-For": "192.0.2.50, 10.0.0.2", "Origin": SITE}
    for hops, expected in ((0, "127.0.0.1"), (1, "10.0.0.2"), (2, "192.0.2.50")):
        client = client_with(trusted_proxy_hops=hops)
        send(client, account.api_key, track(), headers=forwarded)
        assert payloads(engine, account.account_id)[-1]["context"]["ip"] == expected


# --- rate limit ----------------------------------------------------------------------------


def test_one_client_over_the_browser_rate_limit_is_429_with_retry_after(client_with, account):
    client = client_with(browser_rate_limit="2/minute")
    key = browser_key(client, account)
    here, there = {"REMOTE_ADDR": "203.0.113.7"}, {"REMOTE_ADDR": "203.0.113.8"}
    statuses = [send(client, key, track(), environ_base=here).status_code for _ in range(2)]
    over = send(client, key, track(), environ_base=here)
    assert statuses == [200, 200]
    assert over.status_code == 429
    assert 0 < int(over.headers["Retry-After"]) <= 60
    assert over.headers["Access-Control-Allow-Origin"] == SITE
    assert send(client, key, track(), environ_base=there).status_code == 200
    server_key = [send(client, account.api_key, track(), environ_base=here) for _ in range(3)]
    assert [r.status_code for r in server_key] == [200, 200, 200]


# --- X-Api-Key -----------------------------------------------------------------------------


def test_the_webhook_takes_the_key_in_x_api_key(client, account, engine):
    response = client.post(
        "/webhook", data=orjson.dumps(track()), headers={"X-Api-Key": account.api_key}
    )
    assert response.status_code == 200
    assert signal_count(engine, account.account_id) == 1
    bad = client.post("/webhook", data=orjson.dumps(track()), headers={"X-Api-Key": "rk_1_x"})
    assert bad.status_code == 401
