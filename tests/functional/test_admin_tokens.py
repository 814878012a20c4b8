"""Admin tokens: several per account, each revocable, never the last live one."""

from __future__ import annotations

from tests.conftest import make_account
from tests.functional.test_admin_api import auth


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_new_token_works_beside_the_first_and_is_listed(client, account):
    created = client.post("/admin/tokens", headers=auth(account))
    assert created.status_code == 201
    new = created.json["admin_token"]
    assert new.startswith(f"ra_{account.account_id}_") and new != account.admin_token
    listed = client.get("/admin/tokens", headers=bearer(new)).json
    assert [t["prefix"] for t in listed] == [
        account.admin_token[: len(listed[0]["prefix"])],
        new[: len(listed[1]["prefix"])],
    ]
    assert [t["current"] for t in listed] == [False, True]
    assert all("admin_token" not in t for t in listed)


def test_a_revoked_token_answers_401_and_shows_revoked(client, account):
    new = client.post("/admin/tokens", headers=auth(account)).json
    assert client.delete(f"/admin/tokens/{new['id']}", headers=auth(account)).status_code == 204
    assert client.get("/admin/usage", headers=bearer(new["admin_token"])).status_code == 401
    listed = {t["id"]: t for t in client.get("/admin/tokens", headers=auth(account)).json}
    assert listed[new["id"]]["revoked_at"] is not None


def test_a_token_can_revoke_itself_once_another_is_live(client, account):
    other = client.post("/admin/tokens", headers=auth(account)).json
    mine = next(t for t in client.get("/admin/tokens", headers=auth(account)).json if t["current"])
    assert client.delete(f"/admin/tokens/{mine['id']}", headers=auth(account)).status_code == 204
    assert client.get("/admin/usage", headers=auth(account)).status_code == 401
    assert client.get("/admin/usage", headers=bearer(other["admin_token"])).status_code == 200


def test_the_last_live_token_cannot_be_revoked(client, account):
    only = client.get("/admin/tokens", headers=auth(account)).json[0]
    response = client.delete(f"/admin/tokens/{only['id']}", headers=auth(account))
    assert response.status_code == 409
    assert "last live admin token" in response.json["message"]
    assert client.get("/admin/usage", headers=auth(account)).status_code == 200


def test_another_accounts_token_is_not_found(client, account, engine):
    other = make_account(engine)
    theirs = client.get("/admin/tokens", headers=auth(other)).json[0]
    client.post("/admin/tokens", headers=auth(account))
    response = client.delete(f"/admin/tokens/{theirs['id']}", headers=auth(account))
    assert response.status_code == 404
    assert client.get("/admin/usage", headers=auth(other)).status_code == 200
