"""Events sent by code Segment wrote, not by our imitation of it: its Python library, its Node
library and its Webhooks (Actions) destination, against gunicorn on Postgres.

Each test sends one browsing session: an anonymous visitor views the pricing page and requests
a demo, signs up (an identify with the anonymousId, a userId and an email), then the backend
records an event under the userId alone. Whatever the order the events arrive in, all of them
must end on the lead of that email, none left cold.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from segment.analytics import Client

from tests.e2e.conftest import create_account, query

NODE_DIR = Path(__file__).parent / "node"
SESSION_TYPES = Counter({"page": 1, "track": 3, "identify": 1})
NAME = "Ada Lovelace"


def stored_signals(database_url: str, account_id: str) -> list[sa.RowMapping]:
    return query(
        database_url,
        "SELECT s.message_id, s.event_type, s.is_cold, s.lead_id, l.email FROM signals s "
        "LEFT JOIN leads l ON l.account_id = s.account_id AND l.id = s.lead_id "
        "WHERE s.account_id = :a",
        a=account_id,
    )


def assert_session_on_the_lead(
    database_url: str, account: dict[str, str], email: str, message_ids: list[str]
) -> None:
    """Exactly the session's events are stored, once each, all on the one lead of email."""
    leads = query(
        database_url,
        "SELECT id, email, name FROM leads WHERE account_id = :a",
        a=account["account_id"],
    )
    assert [(lead["email"], lead["name"]) for lead in leads] == [(email, NAME)]
    signals = stored_signals(database_url, account["account_id"])
    assert sorted(s["message_id"] for s in signals) == sorted(message_ids)
    assert Counter(s["event_type"] for s in signals) == SESSION_TYPES
    assert {(s["lead_id"], s["email"], s["is_cold"]) for s in signals} == {
        (leads[0]["id"], email, False)
    }


def visitor() -> dict[str, str]:
    tag = uuid.uuid4().hex[:12]
    return {
        "anonymousId": f"anon-{tag}",
        "userId": f"user-{tag}",
        "email": f"ada-{tag}@example.com",
    }


# --- segment-analytics-python --------------------------------------------------------------


def send_python_session(client: Client, who: dict[str, str]) -> list[str]:
    anonymous_id, user_id = who["anonymousId"], who["userId"]
    calls = [
        client.page(anonymous_id=anonymous_id, name="Pricing", properties={"path": "/pricing"}),
        client.track(anonymous_id=anonymous_id, event="Pricing Viewed", properties={"plan": "pro"}),
        client.track(
            anonymous_id=anonymous_id, event="Demo Requested", properties={"form": "demo"}
        ),
        client.identify(
            anonymous_id=anonymous_id,
            user_id=user_id,
            traits={"email": who["email"], "name": NAME},
        ),
        client.track(user_id=user_id, event="Workspace Created", properties={"seats": 3}),
    ]
    assert all(queued for queued, _ in calls)
    return [message["messageId"] for _, message in calls]


@pytest.mark.parametrize("sync_mode", [False, True], ids=["queued", "sync-mode"])
@pytest.mark.parametrize("route", ["/v1/batch", "/webhook/<key>/v1/batch"])
def test_python_library_session_ends_on_the_lead(server, route, sync_mode):
    account = create_account(server.database_url)
    # The library always posts to <host>/v1/batch: the key goes in the host for the second route.
    host = server.url if route == "/v1/batch" else server.url + account["webhook_path"]
    errors: list[BaseException] = []
    client = Client(
        write_key=account["api_key"],
        host=host,
        sync_mode=sync_mode,
        on_error=lambda error, batch: errors.append(error),
        timeout=5,
        # A rejected batch must fail the test, not be retried with backoff for minutes.
        max_retries=0,
        max_total_backoff_duration=1,
    )
    who = visitor()
    try:
        message_ids = send_python_session(client, who)
    finally:
        # Flushes the queue, bounded by timeout and max_retries. Sync mode sent each call as it
        # was made and has no consumer thread (its shutdown() raises TypeError in 2.4.0).
        if not sync_mode:
            client.shutdown()
    assert errors == []
    assert_session_on_the_lead(server.database_url, account, who["email"], message_ids)


def test_python_library_with_gzip_on_ends_on_the_lead(server):
    account = create_account(server.database_url)
    errors: list[BaseException] = []
    client = Client(
        write_key=account["api_key"],
        host=server.url,
        gzip=True,  # Content-Encoding: gzip on every batch
        on_error=lambda error, batch: errors.append(error),
        timeout=5,
        max_retries=0,
        max_total_backoff_duration=1,
    )
    who = visitor()
    try:
        message_ids = send_python_session(client, who)
    finally:
        client.shutdown()
    assert errors == []
    assert_session_on_the_lead(server.database_url, account, who["email"], message_ids)


# --- Node: @segment/analytics-node and the Webhooks (Actions) destination --------------------


@pytest.fixture(scope="session")
def node() -> str:
    """node, with tests/e2e/node's pinned packages installed (CI starts from a fresh clone)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run Segment's Node code; not found on PATH")
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        # --ignore-scripts: the packages are plain JavaScript; the only install scripts in the
        # tree build an optional native SSH helper that no test uses.
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci in {NODE_DIR} failed:\n{done.stdout}\n{done.stderr}")
    return node


def run_node(node: str, command: str, **options: Any) -> tuple[int, dict[str, Any], str]:
    """Runs send.js; returns its exit code, the JSON it printed and its stderr."""
    done = subprocess.run(
        [node, "send.js", command, json.dumps(options)],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        printed = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"send.js {command} printed no result ({done.returncode}):\n{done.stderr}")
    return done.returncode, printed, done.stderr


@pytest.mark.parametrize("flush_at", [15, 1], ids=["one-batch", "one-request-per-event"])
@pytest.mark.parametrize("route", ["/webhook/<key>", "/v1/batch"])
def test_node_library_session_ends_on_the_lead(server, node, route, flush_at):
    account = create_account(server.database_url)
    path = account["webhook_path"] if route == "/webhook/<key>" else "/v1/batch"
    who = visitor()
    # flushAt 1 sends each event as its own request, all in flight at once: any order.
    code, printed, stderr = run_node(
        node,
        "analytics-node",
        host=server.url,
        path=path,
        writeKey=account["api_key"],
        flushAt=flush_at,
        **who,
    )
    assert code == 0, (printed, stderr)
    assert {r["url"] for r in printed["responses"]} == {server.url + path}
    assert len(printed["responses"]) == (1 if flush_at == 15 else 5)
    assert_session_on_the_lead(server.database_url, account, who["email"], printed["messageIds"])


def received_bodies(printed: dict[str, Any]) -> list[dict[str, Any]]:
    assert {r["status"] for r in printed["responses"]} == {200}, printed
    # Signed with the shared secret: the receiver checked it (a wrong one is refused, below).
    assert all(r["signature"] for r in printed["responses"]), printed
    return [r["body"] for r in printed["responses"]]


def test_webhooks_destination_signing_each_event_puts_the_session_on_the_lead(server, node):
    account = create_account(server.database_url, "--secret", "S3cret-e2e")
    who = visitor()
    code, printed, stderr = run_node(
        node,
        "webhook-actions",
        url=server.url + account["webhook_path"],
        sharedSecret="S3cret-e2e",
        batch=False,
        **who,
    )
    assert code == 0, (printed, stderr)
    bodies = received_bodies(printed)
    assert [(b["received"], b["stored"], b["duplicates"]) for b in bodies] == [(1, 1, 0)] * 5
    # The three anonymous events wait cold until the identify; the userId's event does not.
    assert [b["results"][0]["status"] for b in bodies] == ["cold"] * 3 + ["stored"] * 2
    assert_session_on_the_lead(server.database_url, account, who["email"], printed["messageIds"])


def test_webhooks_destination_batch_is_stored_once_and_its_redelivery_is_all_duplicates(
    server, node
):
    # Segment signs a batch with the HMAC of its first event alone (extendRequest signs
    # payload[0].data), which the receiver accepts for a JSON array (docs/reference.md,
    # "Authentication").
    account = create_account(server.database_url, "--secret", "S3cret-e2e")
    who = visitor()
    code, printed, stderr = run_node(
        node,
        "webhook-actions",
        url=server.url + account["webhook_path"],
        sharedSecret="S3cret-e2e",
        batch=True,
        deliveries=2,
        **who,
    )
    assert code == 0, (printed, stderr)
    first, again = received_bodies(printed)
    assert (first["received"], first["stored"], first["duplicates"]) == (5, 5, 0)
    assert [r["messageId"] for r in first["results"]] == printed["messageIds"]
    assert (again["received"], again["stored"], again["duplicates"]) == (5, 0, 5)
    assert {r["status"] for r in again["results"]} == {"duplicate"}
    assert_session_on_the_lead(server.database_url, account, who["email"], printed["messageIds"])


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_webhooks_destination_with_the_wrong_shared_secret_is_refused_and_nothing_is_stored(
    server, node, batch
):
    account = create_account(server.database_url, "--secret", "S3cret-e2e")
    code, printed, stderr = run_node(
        node,
        "webhook-actions",
        url=server.url + account["webhook_path"],
        sharedSecret="not-the-secret",
        batch=batch,
        **visitor(),
    )
    assert code == 1, (printed, stderr)
    assert printed["errors"], printed
    assert all("401" in error for error in printed["errors"]), printed
    assert stored_signals(server.database_url, account["account_id"]) == []
