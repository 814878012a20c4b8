"""Admin tokens through the real CLI and gunicorn: created, revoked, rotated."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.e2e.conftest import cli, create_account


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def usage_status(server, token):
    return requests.get(f"{server.url}/admin/usage", headers=bearer(token), timeout=10).status_code


def test_cli_creates_another_token_and_revokes_one(server):
    account = create_account(server.database_url)
    made = json.loads(
        cli(server.database_url, "create-admin-token", str(account["account_id"])).stdout
    )
    assert made["account_id"] == account["account_id"]
    assert usage_status(server, made["admin_token"]) == 200
    assert usage_status(server, account["admin_token"]) == 200
    assert "revoked" in cli(server.database_url, "revoke-admin-token", made["admin_token"]).stdout
    assert usage_status(server, made["admin_token"]) == 401
    assert usage_status(server, account["admin_token"]) == 200


def test_cli_revokes_an_accounts_last_token_and_a_new_one_recovers_it(server):
    account = create_account(server.database_url)
    cli(server.database_url, "revoke-admin-token", account["admin_token"])
    assert usage_status(server, account["admin_token"]) == 401
    made = json.loads(
        cli(server.database_url, "create-admin-token", str(account["account_id"])).stdout
    )
    assert usage_status(server, made["admin_token"]) == 200


def test_cli_refuses_unknown_tokens_and_accounts(server):
    for args, message in [
        (["revoke-admin-token", "ra_1_nope"], "no such admin token"),
        (["create-admin-token", "999999999"], "no account 999999999"),
    ]:
        try:
            cli(server.database_url, *args)
        except subprocess.CalledProcessError as failed:
            assert message in failed.stderr
        else:
            raise AssertionError(f"{args} succeeded")


def test_two_tokens_revoking_each_other_at_once_leave_one_live(server):
    live = create_account(server.database_url)["admin_token"]
    live_id = _current_id(server, live)
    for _ in range(30):
        other = requests.post(f"{server.url}/admin/tokens", headers=bearer(live), timeout=10).json()
        with ThreadPoolExecutor(2) as pool:
            statuses = list(
                pool.map(
                    lambda pair: (
                        requests.delete(
                            f"{server.url}/admin/tokens/{pair[0]}",
                            headers=bearer(pair[1]),
                            timeout=10,
                        ).status_code
                    ),
                    [(other["id"], live), (live_id, other["admin_token"])],
                )
            )
        assert sorted(statuses) in ([204, 401], [204, 409]), statuses
        if usage_status(server, live) != 200:
            live, live_id = other["admin_token"], other["id"]
        assert usage_status(server, live) == 200


def _current_id(server, token):
    listed = requests.get(f"{server.url}/admin/tokens", headers=bearer(token), timeout=10).json()
    return next(t["id"] for t in listed if t["current"])
