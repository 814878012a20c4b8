"""Rule history (CONTRACT section 3): every definition kept, listed and revertible; a change
that changes nothing is no version; a disabled rule has no backfill."""

from __future__ import annotations

import pytest

from tests.builders import track
from tests.functional.test_admin_api import DEMO_RULE, auth, form, send, wait_for_backfill
from tests.functional.test_webhook import BOTH_STORES


def versions(client, account, rule_id):
    response = client.get(f"/admin/rules/{rule_id}/versions", headers=auth(account))
    assert response.status_code == 200, response.json
    return response.json


@BOTH_STORES
def test_every_change_keeps_its_definition_and_lists_them_oldest_first(client, account):
    rule = client.post("/admin/rules", json=DEMO_RULE, headers=auth(account)).json
    client.patch(f"/admin/rules/{rule['id']}", json={"priority": 5}, headers=auth(account))
    newer = {"name": "Trials", "event_name": "Trial Started", "conditions": []}
    changed = client.put(f"/admin/rules/{rule['id']}", json=newer, headers=auth(account)).json
    assert changed["version"] == 3
    listed = versions(client, account, rule["id"])
    assert [v["version"] for v in listed] == [1, 2, 3]
    first, second, third = listed
    assert {k: first[k] for k in DEMO_RULE} == DEMO_RULE
    assert (second["priority"], second["conditions"]) == (5, DEMO_RULE["conditions"])
    assert (third["name"], third["event_name"], third["priority"]) == ("Trials", "Trial Started", 0)
    assert all(v["created_at"].endswith("+00:00") for v in listed)
    assert not {"id", "backfill", "updated_at"} & set(first)


@BOTH_STORES
def test_revert_is_a_new_version_with_a_backfill_of_the_old_match(client, account):
    send(client, account, form("early@example.com"))
    rule = client.post("/admin/rules", json=DEMO_RULE, headers=auth(account)).json
    wait_for_backfill(client, account, rule["id"])
    other = {**DEMO_RULE, "event_name": "Nothing Like It"}
    client.put(f"/admin/rules/{rule['id']}", json=other, headers=auth(account))
    wait_for_backfill(client, account, rule["id"])
    send(client, account, form("later@example.com"))  # queued: version 2 does not match it
    reverted = client.post(
        f"/admin/rules/{rule['id']}/revert", json={"version": 1}, headers=auth(account)
    )
    assert reverted.status_code == 200, reverted.json
    assert reverted.json["version"] == 3
    assert reverted.json["event_name"] == DEMO_RULE["event_name"]
    done = wait_for_backfill(client, account, rule["id"])
    assert done["backfill"]["mapped"] == 1
    lead = client.get("/admin/leads?email=later@example.com", headers=auth(account)).json
    assert [s["mapped_name"] for s in lead["signals"]] == ["Demo Requested"]
    assert [v["version"] for v in versions(client, account, rule["id"])] == [1, 2, 3]


def test_revert_to_the_current_definition_or_a_missing_version(client, account):
    rule = client.post("/admin/rules", json=DEMO_RULE, headers=auth(account)).json
    same = client.post(
        f"/admin/rules/{rule['id']}/revert", json={"version": 1}, headers=auth(account)
    )
    assert same.status_code == 200 and same.json["version"] == 1
    missing = client.post(
        f"/admin/rules/{rule['id']}/revert", json={"version": 7}, headers=auth(account)
    )
    assert missing.status_code == 404 and "versions" in missing.json["message"]
    bad = client.post(f"/admin/rules/{rule['id']}/revert", json={}, headers=auth(account))
    assert bad.status_code == 422 and "version" in bad.json["errors"]


@BOTH_STORES
@pytest.mark.parametrize("method, body", [("PATCH", {}), ("PUT", DEMO_RULE)])
def test_a_change_that_changes_nothing_is_no_version_and_no_backfill(client, account, method, body):
    send(client, account, form())
    rule = client.post("/admin/rules", json=DEMO_RULE, headers=auth(account)).json
    done = wait_for_backfill(client, account, rule["id"])
    again = client.open(
        f"/admin/rules/{rule['id']}", method=method, json=body, headers=auth(account)
    ).json
    assert again["version"] == 1 and again["updated_at"] == done["updated_at"]
    assert again["backfill"] == done["backfill"]
    assert len(versions(client, account, rule["id"])) == 1


@BOTH_STORES
def test_a_disabled_rule_has_no_backfill_until_enabled(client, account):
    send(client, account, form())
    rule = client.post(
        "/admin/rules", json={**DEMO_RULE, "enabled": False}, headers=auth(account)
    ).json
    assert rule["backfill"]["status"] == "none"
    renamed = client.patch(
        f"/admin/rules/{rule['id']}", json={"event_name": "Other"}, headers=auth(account)
    ).json
    assert renamed["backfill"]["status"] == "none"
    client.patch(
        f"/admin/rules/{rule['id']}",
        json={"enabled": True, "event_name": DEMO_RULE["event_name"]},
        headers=auth(account),
    )
    done = wait_for_backfill(client, account, rule["id"])
    assert done["backfill"]["mapped"] == 1
    disabled = client.patch(
        f"/admin/rules/{rule['id']}", json={"enabled": False}, headers=auth(account)
    ).json
    assert disabled["backfill"]["status"] == "none"


@BOTH_STORES
def test_backfill_times_carry_their_utc_offset(client, account):
    send(client, account, track())
    rule = client.post("/admin/rules", json=DEMO_RULE, headers=auth(account)).json
    done = wait_for_backfill(client, account, rule["id"])["backfill"]
    for name in ("started_at", "heartbeat_at", "finished_at"):
        assert done[name].endswith("+00:00"), (name, done)
    assert done["started_at"] <= done["finished_at"]


def test_another_accounts_rule_has_no_versions_here(client, account, engine):
    from tests.conftest import make_account

    rule = client.post("/admin/rules", json=DEMO_RULE, headers=auth(account)).json
    other = make_account(engine)
    response = client.get(f"/admin/rules/{rule['id']}/versions", headers=auth(other))
    assert response.status_code == 404


@BOTH_STORES
def test_deleting_a_rule_keeps_what_it_mapped_and_drops_its_versions(client, account, engine):
    import sqlalchemy as sa

    send(client, account, form())
    rule = client.post("/admin/rules", json=DEMO_RULE, headers=auth(account)).json
    wait_for_backfill(client, account, rule["id"])
    client.patch(f"/admin/rules/{rule['id']}", json={"priority": 3}, headers=auth(account))
    assert client.delete(f"/admin/rules/{rule['id']}", headers=auth(account)).status_code == 204
    lead = client.get("/admin/leads?email=ada@example.com", headers=auth(account)).json
    assert [(s["mapped_name"], s["score"]) for s in lead["signals"]] == [("Demo Requested", 10)]
    with engine.connect() as connection:
        kept = connection.execute(
            sa.text("SELECT count(*) FROM rule_versions WHERE account_id = :a"),
            {"a": account.account_id},
        ).scalar_one()
    assert kept == 0


def test_changes_racing_on_postgres_each_make_one_version(app, client, account):
    import threading

    rule = client.post("/admin/rules", json=DEMO_RULE, headers=auth(account)).json
    barrier, statuses = threading.Barrier(6), []

    def change(priority: int) -> None:
        own = app.test_client()
        barrier.wait()
        response = own.patch(
            f"/admin/rules/{rule['id']}", json={"priority": priority}, headers=auth(account)
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=change, args=(n,)) for n in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 6
    listed = versions(client, account, rule["id"])
    assert [v["version"] for v in listed] == list(range(1, 8))
    assert sorted(v["priority"] for v in listed[1:]) == list(range(1, 7))
    current = client.get(f"/admin/rules/{rule['id']}", headers=auth(account)).json
    assert (current["version"], current["priority"]) == (7, listed[-1]["priority"])
