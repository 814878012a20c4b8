"""Correcting leads while their visitors keep sending: gunicorn workers racing on Postgres."""

from __future__ import annotations

import uuid
from collections import Counter

import orjson

from tests.builders import identify, track
from tests.e2e.conftest import create_account, http_request, query, send_all_at_once

VISITORS, BODIES, BATCH = 8, 12, 10


def test_unlinks_racing_their_identifiers_tracks_put_none_on_the_lead(server):
    """Each visitor's device is unlinked from its lead while a dozen batches of its tracks
    arrive, all sent at once. A track that placed itself by the graph before the unlink must
    not land on the lead after it: every track ends cold under the device, none on the lead.
    Without the unlink's identity locks some stay on the lead."""
    account = create_account(server.database_url, "--signal-limit", "1000000")
    path, admin = account["webhook_path"], {"Authorization": f"Bearer {account['admin_token']}"}
    devices = [f"device-{uuid.uuid4()}" for _ in range(VISITORS)]
    setup = [
        http_request("POST", path, orjson.dumps(identify(f"{d}@example.com", anonymousId=d)))
        for d in devices
    ]
    assert {status for status, _ in send_all_at_once(server.port, setup)} == {200}
    lead_ids = {
        row["email"]: row["id"]
        for row in query(
            server.database_url,
            "SELECT id, email FROM leads WHERE account_id = :a",
            a=account["account_id"],
        )
    }
    raws = []
    for device in devices:
        requests_ = [
            http_request(
                "POST", path, orjson.dumps([track(anonymousId=device) for _ in range(BATCH)])
            )
            for _ in range(BODIES)
        ]
        unlink = orjson.dumps({"kind": "anonymous_id", "value": device})
        lead_id = lead_ids[f"{device}@example.com"]
        requests_.insert(
            BODIES // 2,
            http_request("POST", f"/admin/leads/{lead_id}/unlink", unlink, admin),
        )
        raws += requests_
    answers = send_all_at_once(server.port, raws)
    assert Counter(status for status, _ in answers) == {200: len(raws)}
    tracks = query(
        server.database_url,
        "SELECT lead_id, is_cold FROM signals WHERE account_id = :a AND event_type = 'track'",
        a=account["account_id"],
    )
    assert len(tracks) == VISITORS * BODIES * BATCH
    assert Counter((row["lead_id"], row["is_cold"]) for row in tracks) == {
        (None, True): len(tracks)
    }
    identifies = query(
        server.database_url,
        "SELECT s.anonymous_id, l.email FROM signals s JOIN leads l"
        " ON l.account_id = s.account_id AND l.id = s.lead_id"
        " WHERE s.account_id = :a AND s.event_type = 'identify'",
        a=account["account_id"],
    )
    assert sorted(row["email"] for row in identifies) == sorted(f"{d}@example.com" for d in devices)


def test_merges_racing_identifies_of_the_merged_email_leave_one_lead(server):
    """Pairs of leads are merged while identifies with the email merged away arrive from new
    devices, all sent at once: every one ends on the survivor, none on the deleted lead and
    no lead is made again for that email."""
    account = create_account(server.database_url, "--signal-limit", "1000000")
    path, admin = account["webhook_path"], {"Authorization": f"Bearer {account['admin_token']}"}
    people = [f"person-{uuid.uuid4()}" for _ in range(VISITORS)]
    setup = [
        http_request("POST", path, orjson.dumps(identify(f"{p}@{side}.example", anonymousId=a)))
        for p in people
        for side, a in (("work", f"{p}-w"), ("home", f"{p}-h"))
    ]
    assert {status for status, _ in send_all_at_once(server.port, setup)} == {200}
    ids = {
        row["email"]: row["id"]
        for row in query(
            server.database_url,
            "SELECT id, email FROM leads WHERE account_id = :a",
            a=account["account_id"],
        )
    }
    raws = []
    for p in people:
        merge = {"from": ids[f"{p}@work.example"], "into": ids[f"{p}@home.example"]}
        requests_ = [
            http_request(
                "POST",
                path,
                orjson.dumps(
                    [identify(f"{p}@work.example", anonymousId=f"{p}-{n}-{m}") for m in range(3)]
                ),
            )
            for n in range(BODIES)
        ]
        requests_.insert(
            BODIES // 2, http_request("POST", "/admin/leads/merge", orjson.dumps(merge), admin)
        )
        raws += requests_
    answers = send_all_at_once(server.port, raws)
    assert Counter(status for status, _ in answers) == {200: len(raws)}
    leads = query(
        server.database_url,
        "SELECT email FROM leads WHERE account_id = :a ORDER BY email",
        a=account["account_id"],
    )
    assert [row["email"] for row in leads] == sorted(f"{p}@home.example" for p in people)
    placed = query(
        server.database_url,
        "SELECT s.anonymous_id, l.email FROM signals s LEFT JOIN leads l"
        " ON l.account_id = s.account_id AND l.id = s.lead_id WHERE s.account_id = :a",
        a=account["account_id"],
    )
    owner = {
        r["anonymous_id"]: next(p for p in people if r["anonymous_id"].startswith(p))
        for r in placed
    }
    misplaced = [r for r in placed if r["email"] != f"{owner[r['anonymous_id']]}@home.example"]
    assert len(placed) == VISITORS * (2 + 3 * BODIES)
    assert misplaced == []
