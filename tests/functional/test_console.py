"""The admin console (CONTRACT section 7) through the Flask test client: signing in and out,
CSRF and Origin checks, tenants kept apart, and its pages' paging."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa

from receiver import accounts, db
from receiver.console import leads as lead_pages
from receiver.console import queue as queue_pages
from receiver.console import sessions
from receiver.console.auth import COOKIE
from tests.builders import identify, track
from tests.conftest import make_account
from tests.functional.test_admin_api import DEMO_RULE, wait_for_backfill
from tests.functional.test_webhook import BOTH_STORES

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def bearer(account):
    return {"Authorization": f"Bearer {account.admin_token}"}


def sign_in(client, account) -> str:
    """Sign the client in; the CSRF token its forms carry."""
    answer = client.post("/console/sign-in", data={"admin_token": account.admin_token})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return csrf_of(client)


def csrf_of(client) -> str:
    page = client.get("/console/rules")
    assert page.status_code == 200
    return CSRF.search(page.get_data(as_text=True)).group(1)


def send(client, account, *events):
    answer = client.post(f"/webhook/{account.api_key}", data=orjson.dumps(list(events)))
    assert answer.status_code == 200, answer.json


def rule_form(csrf, **overrides):
    form = {
        "csrf_token": csrf,
        "name": "Demo requests",
        "enabled": "on",
        "priority": "100",
        "source": "segment",
        "event_type": "track",
        "event_name": "Form Submitted",
        "condition_field": ["properties.form_name", ""],
        "condition_op": ["equals", "equals"],
        "condition_value": ["demo", ""],
        "field_name": ["email", ""],
        "field_path": ["properties.email", ""],
        "signal_name": "Demo Requested",
        "signal_score": "10",
        "sample": "",
    }
    return {**form, **overrides}


def rule_count(engine, account) -> int:
    with engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT count(*) FROM rules WHERE account_id = :a"), {"a": account.account_id}
        ).scalar_one()


def form_submitted(email, form_name="demo"):
    return track("Form Submitted", properties={"form_name": form_name, "email": email})


@BOTH_STORES
def test_signing_in_sets_an_http_only_cookie_and_signing_out_ends_the_session(client, account):
    assert client.get("/console/queue").headers["Location"].startswith("/console/sign-in")
    answer = client.post("/console/sign-in", data={"admin_token": account.admin_token})
    assert answer.status_code == 302
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console/" in cookie
    assert "Secure" not in cookie  # plain HTTP on 127.0.0.1: a Secure cookie would never return
    value = client.get_cookie(COOKIE, path="/console/").value
    assert client.get("/console/queue").status_code == 200
    csrf = csrf_of(client)
    assert client.post("/console/sign-out", data={"csrf_token": csrf}).status_code == 302
    # The same cookie, sent again, names no session any more: it ended on the server.
    client.set_cookie(COOKIE, value, path="/console/")
    assert client.get("/console/queue").headers["Location"].startswith("/console/sign-in")


def test_the_cookie_is_secure_over_https(client, account):
    answer = client.post(
        "/console/sign-in",
        data={"admin_token": account.admin_token},
        base_url="https://console.example",
    )
    assert "Secure" in answer.headers["Set-Cookie"]


@BOTH_STORES
@pytest.mark.parametrize("kind", ["wrong", "api key", "garbage", "empty"])
def test_a_wrong_token_stays_signed_out_with_a_message(client, account, kind):
    token = {
        "wrong": f"ra_{account.account_id}_{'x' * 32}",
        "api key": account.api_key,
        "garbage": "hello",
        "empty": "",
    }[kind]
    answer = client.post("/console/sign-in", data={"admin_token": token})
    assert answer.status_code == 401
    assert "not a live admin token" in answer.get_data(as_text=True)
    assert "Set-Cookie" not in answer.headers
    assert client.get("/console/queue").status_code == 302


def test_sign_in_attempts_are_rate_limited_per_address(client, account):
    for _ in range(20):
        client.post("/console/sign-in", data={"admin_token": "ra_1_guessguessguessguessguess"})
    answer = client.post("/console/sign-in", data={"admin_token": account.admin_token})
    assert answer.status_code == 429 and answer.headers["Retry-After"]


def test_revoking_the_admin_token_ends_its_console_sessions(client, account, engine):
    sign_in(client, account)
    db.run_transaction(
        engine,
        lambda session: accounts.revoke_admin_token(
            session, account.admin_token, datetime.now(UTC)
        ),
    )
    assert client.get("/console/queue").headers["Location"].startswith("/console/sign-in")


@BOTH_STORES
def test_a_session_ends_after_its_idle_time_and_lives_while_used(engine, account):
    now = datetime(2026, 11, 1, tzinfo=UTC)
    cookie, _ = db.run_transaction(
        engine, lambda session: sessions.start(session, account.admin_token, now)
    )

    def find(at):
        return db.run_transaction(engine, lambda session: sessions.find(session, cookie, at))

    assert find(now + timedelta(hours=11)) is not None  # used: its idle time starts again
    assert find(now + timedelta(hours=22)) is not None
    assert find(now + timedelta(hours=22) + sessions.IDLE) is None


@BOTH_STORES
def test_a_change_without_the_right_csrf_token_is_refused_and_changes_nothing(
    client, account, engine
):
    csrf = sign_in(client, account)
    for sent in ({}, {"csrf_token": "forged"}, {"csrf_token": csrf[:-1]}):
        form = {k: v for k, v in rule_form(csrf).items() if k != "csrf_token"} | sent
        answer = client.post("/console/rules/new", data=form)
        assert answer.status_code == 400
        assert "CSRF" in answer.get_data(as_text=True)
    assert rule_count(engine, account) == 0
    assert client.post("/console/rules/new", data=rule_form(csrf)).status_code == 302
    assert rule_count(engine, account) == 1


def test_a_change_from_another_origin_is_refused_even_with_the_token(client, account, engine):
    csrf = sign_in(client, account)
    answer = client.post(
        "/console/rules/new", data=rule_form(csrf), headers={"Origin": "https://evil.example"}
    )
    assert answer.status_code == 403
    assert rule_count(engine, account) == 0
    same = client.post(
        "/console/rules/new", data=rule_form(csrf), headers={"Origin": "http://localhost"}
    )
    assert same.status_code == 302


def test_a_change_without_a_session_is_refused(client, account, engine):
    assert client.post("/console/rules/new", data=rule_form("x")).status_code == 403
    assert rule_count(engine, account) == 0


def test_console_pages_load_nothing_from_elsewhere(client, account):
    sign_in(client, account)
    answer = client.get("/console/queue")
    assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Cache-Control"] == "no-store"
    html = answer.get_data(as_text=True)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    with client.get("/console/static/console.css") as sheet:
        assert sheet.status_code == 200


@BOTH_STORES
def test_another_accounts_rule_lead_and_key_ids_answer_404(client, engine):
    theirs, mine = make_account(engine), make_account(engine)
    rule = client.post("/admin/rules", json=DEMO_RULE, headers=bearer(theirs)).json
    send(client, theirs, identify("theirs@example.com"))
    lead = client.get("/admin/leads?email=theirs@example.com", headers=bearer(theirs)).json
    key = client.get("/admin/keys", headers=bearer(theirs)).json[0]
    csrf = sign_in(client, mine)
    rule_id = rule["id"]
    for path in (f"/console/rules/{rule_id}", f"/console/leads/{lead['id']}"):
        assert client.get(path).status_code == 404
    for path, form in (
        (f"/console/rules/{rule_id}", rule_form(csrf, name="Taken over")),
        (f"/console/rules/{rule_id}/enabled", {"csrf_token": csrf}),
        (f"/console/rules/{rule_id}/revert", {"csrf_token": csrf, "version": "1"}),
        (f"/console/rules/{rule_id}/backfill/cancel", {"csrf_token": csrf}),
        (f"/console/rules/{rule_id}/delete", {"csrf_token": csrf}),
        (f"/console/keys/{key['id']}/revoke", {"csrf_token": csrf}),
        (
            f"/console/leads/{lead['id']}/unlink",
            {"csrf_token": csrf, "kind": "anonymous_id", "value": lead["identities"][0]["value"]},
        ),
    ):
        assert client.post(path, data=form).status_code == 404, path
    preview = client.post("/console/rules/preview", data=rule_form(csrf, rule_id=str(rule_id)))
    assert preview.status_code == 404
    after = client.get(f"/admin/rules/{rule_id}", headers=bearer(theirs)).json
    assert (after["name"], after["enabled"], after["version"]) == (DEMO_RULE["name"], True, 1)
    assert client.get("/admin/keys", headers=bearer(theirs)).json[0]["revoked_at"] is None
    assert client.get("/console/leads?email=theirs@example.com").status_code == 404
    assert "theirs@example.com" not in client.get("/console/leads").get_data(as_text=True)


@BOTH_STORES
def test_a_rule_made_from_a_queue_group_previews_saves_and_backfills(client, account):
    send(client, account, *(form_submitted(f"p{n}@example.com") for n in range(3)))
    send(client, account, form_submitted("other@example.com", form_name="newsletter"))
    csrf = sign_in(client, account)
    group = client.get(
        "/console/queue/group?source=segment&event_type=track&event_name=Form+Submitted"
    ).get_data(as_text=True)
    assert "properties.form_name" in group and "100%" in group
    editor = client.get(
        "/console/rules/new?source=segment&event_type=track&event_name=Form+Submitted"
        "&condition=properties.form_name"
    ).get_data(as_text=True)
    assert 'value="properties.email"' in editor  # the suggested rule's field
    assert 'value="properties.form_name"' in editor  # the picked path, as a condition
    preview = client.post("/console/rules/preview", data=rule_form(csrf)).get_data(as_text=True)
    assert re.search(r'id="preview-matches">3<', preview)
    assert re.search(r'id="preview-leads">3<', preview)
    saved = client.post("/console/rules/new", data=rule_form(csrf))
    rule_id = int(saved.headers["Location"].split("/")[3].split("?")[0])
    assert wait_for_backfill(client, account, rule_id)["backfill"]["mapped"] == 3
    page = client.get(f"/console/rules/{rule_id}").get_data(as_text=True)
    assert re.search(r'id="backfill-status">done<', page)


def test_an_invalid_rule_is_not_saved_and_says_why(client, account, engine):
    csrf = sign_in(client, account)
    form = rule_form(csrf, condition_op=["gt", "equals"], condition_value=["many", ""])
    answer = client.post("/console/rules/new", data=form)
    assert answer.status_code == 422
    assert "conditions 1 value: `gt` needs a number" in answer.get_data(as_text=True)
    assert rule_count(engine, account) == 0


def test_disable_revert_and_delete_go_through_the_rules_service(client, account):
    csrf = sign_in(client, account)
    rule_id = int(
        client.post("/console/rules/new", data=rule_form(csrf))
        .headers["Location"]
        .split("/")[3]
        .split("?")[0]
    )
    client.post(f"/console/rules/{rule_id}/enabled", data={"csrf_token": csrf})
    rule = client.get(f"/admin/rules/{rule_id}", headers=bearer(account)).json
    assert (rule["enabled"], rule["version"]) == (False, 2)
    client.post(f"/console/rules/{rule_id}/revert", data={"csrf_token": csrf, "version": "1"})
    rule = client.get(f"/admin/rules/{rule_id}", headers=bearer(account)).json
    assert (rule["enabled"], rule["version"]) == (True, 3)
    page = client.get(f"/console/rules/{rule_id}").get_data(as_text=True)
    assert '<span class="del">-   &#34;enabled&#34;: false,</span>' in page
    assert (
        client.post(f"/console/rules/{rule_id}/delete", data={"csrf_token": csrf}).status_code
        == 302
    )
    assert client.get(f"/admin/rules/{rule_id}", headers=bearer(account)).status_code == 404


@BOTH_STORES
def test_the_queue_pages_through_its_groups(client, account, monkeypatch):
    monkeypatch.setattr(queue_pages, "PER_PAGE", 2)
    send(client, account, *(track(f"Event {n}") for n in range(3)))
    sign_in(client, account)
    first = client.get("/console/queue").get_data(as_text=True)
    second = client.get("/console/queue?page=2").get_data(as_text=True)
    assert first.count("/console/queue/group?") == 2 and second.count("/console/queue/group?") == 1
    assert "Page 2 of 2" in second


@BOTH_STORES
def test_a_leads_timeline_pages_newest_first_by_keyset(client, account, monkeypatch):
    monkeypatch.setattr(lead_pages, "TIMELINE_PAGE", 2)
    send(client, account, track(anonymousId="ada", timestamp="2026-11-01T10:00:00Z"))
    for day in (2, 3):
        at = f"2026-11-0{day}T10:00:00Z"
        send(client, account, identify("ada@example.com", anonymousId="ada", timestamp=at))
    sign_in(client, account)
    found = client.get("/console/leads?email=ADA@example.com")
    lead_path = found.headers["Location"]
    first = client.get(lead_path).get_data(as_text=True)
    assert re.findall(r"(2026-11-0\d) 10:00:00 UTC</span>", first) == ["2026-11-03", "2026-11-02"]
    older = re.search(r'href="([^"]+before=[^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(older).get_data(as_text=True)
    assert re.findall(r"(2026-11-0\d) 10:00:00 UTC</span>", second) == ["2026-11-01"]
    assert 'id="older"' not in second
    # The visitor's track waited cold until the first identify moved it onto the lead.
    identified_by = re.findall(r'id="signal-(\d+)"', first)[-1]
    assert f'moved onto this lead by signal <a href="#signal-{identified_by}">' in second


def test_a_new_key_is_shown_once_and_can_be_revoked(client, account):
    csrf = sign_in(client, account)
    made = client.post(
        "/console/keys",
        data={"csrf_token": csrf, "kind": "browser", "allowed_origins": "https://www.acme.example"},
    )
    assert made.status_code == 201
    key = re.search(r'id="new-key">(rk_[^<]+)<', made.get_data(as_text=True)).group(1)
    page = client.get("/console/account").get_data(as_text=True)
    assert key not in page and "https://www.acme.example" in page
    listed = client.get("/admin/keys", headers=bearer(account)).json
    browser_key = next(k for k in listed if k["kind"] == "browser")
    client.post(f"/console/keys/{browser_key['id']}/revoke", data={"csrf_token": csrf})
    listed = client.get("/admin/keys", headers=bearer(account)).json
    assert next(k for k in listed if k["kind"] == "browser")["revoked_at"] is not None


def test_deliveries_filter_by_status_and_by_an_events_result(client, account, app):
    event = track()
    send(client, account, event)
    send(client, account, event, track(properties="not an object"))
    assert client.post(f"/webhook/{account.api_key}", data=b"{").status_code == 400
    from receiver import deliveries

    deliveries.writer_of(app).flush()
    sign_in(client, account)
    every = client.get("/console/deliveries").get_data(as_text=True)
    refused = client.get("/console/deliveries?status=4xx").get_data(as_text=True)
    exact = client.get("/console/deliveries?status=400").get_data(as_text=True)
    answered = re.compile(r'<td class="num"><span class="status [a-z]+">(\d+)</span>')
    assert sorted(answered.findall(every)) == ["200", "200", "400"]
    assert answered.findall(refused) == answered.findall(exact) == ["400"]
    invalid = client.get("/console/deliveries?result=invalid").get_data(as_text=True)
    assert answered.findall(invalid) == ["200"]
    assert "status invalid" in invalid and "status duplicate" not in invalid
    none = client.get("/console/deliveries?result=invalid&status=4xx").get_data(as_text=True)
    assert answered.findall(none) == []


@BOTH_STORES
def test_unlinking_an_identifier_in_the_console_moves_its_signals_back_to_cold(client, account):
    send(client, account, track("Pricing Viewed", anonymousId="visitor-1"))
    send(client, account, identify("ada@example.com", anonymousId="visitor-1"))
    csrf = sign_in(client, account)
    lead_path = client.get("/console/leads?email=ada@example.com").headers["Location"]
    lead_id = int(lead_path.rsplit("/", 1)[1])
    page = client.get(lead_path).get_data(as_text=True)
    assert 'name="value" value="visitor-1"' in page
    unlink = {"csrf_token": csrf, "kind": "anonymous_id", "value": "visitor-1"}
    refused = client.post(f"{lead_path}/unlink", data={**unlink, "csrf_token": "forged"})
    assert refused.status_code == 400
    assert len(client.get(f"/admin/leads/{lead_id}", headers=bearer(account)).json["signals"]) == 2
    done = client.post(f"{lead_path}/unlink", data=unlink)
    assert done.status_code == 302
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Identifier unlinked." in page and re.search(r'id="unlink-moved">1 signal ', page)
    assert 'name="value" value="visitor-1"' not in page
    unlinked = page.split('id="unlinked"', 1)[1].split("</table>", 1)[0]
    assert "visitor-1" in unlinked and "1 signal back to cold storage" in unlinked
    lead = client.get(f"/admin/leads/{lead_id}", headers=bearer(account)).json
    assert [s["event_type"] for s in lead["signals"]] == ["identify"]
    again = client.post(f"{lead_path}/unlink", data=unlink)
    assert again.status_code == 404 and "not one of this lead" in again.get_data(as_text=True)


@pytest.mark.parametrize("version", ["x", "99999999999999999999", "-1", "7"])
def test_reverting_to_a_version_the_rule_does_not_have_answers_404(client, account, version):
    csrf = sign_in(client, account)
    location = client.post("/console/rules/new", data=rule_form(csrf)).headers["Location"]
    answer = client.post(
        location.split("?")[0] + "/revert", data={"csrf_token": csrf, "version": version}
    )
    assert answer.status_code == 404


def test_signing_out_with_no_session_left_just_shows_the_sign_in(client):
    answer = client.post("/console/sign-out", data={})
    assert answer.status_code == 302 and "/console/sign-in" in answer.headers["Location"]
