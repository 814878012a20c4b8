"""Identity resolution under real concurrency: gunicorn workers racing on Postgres."""

from __future__ import annotations

import uuid
from collections import Counter

import orjson
import pytest

from tests.builders import identify, track
from tests.e2e.conftest import create_account, http_request, query, send_all_at_once

BATCH = 20


@pytest.mark.parametrize("run", range(3))
def test_tracks_racing_an_identify_all_end_on_the_lead(server, run):
    """Ten visitors, each with an identify in the middle of forty tracks, all sent at once: a
    track that placed itself cold just before its visitor's identify committed must still
    end on the lead. Without the account's lock some do not, in most runs."""
    account = create_account(server.database_url, "--signal-limit", "1000000")
    path = account["webhook_path"]
    visitors = [f"racer-{uuid.uuid4()}" for _ in range(10)]
    raws = []
    for visitor in visitors:
        # Batches: a longer statement reads the graph longer before it commits.
        tracks = [
            http_request(
                "POST", path, orjson.dumps([track(anonymousId=visitor) for _ in range(BATCH)])
            )
            for _ in range(40)
        ]
        email = f"{visitor}@example.com"
        tracks.insert(
            20, http_request("POST", path, orjson.dumps(identify(email, anonymousId=visitor)))
        )
        raws += tracks
    answers = send_all_at_once(server.port, raws)
    assert Counter(status for status, _ in answers) == {200: len(raws)}
    placed = query(
        server.database_url,
        "SELECT s.anonymous_id, s.is_cold, l.email FROM signals s "
        "LEFT JOIN leads l ON l.account_id = s.account_id AND l.id = s.lead_id "
        "WHERE s.account_id = :a",
        a=account["account_id"],
    )
    assert len(placed) == len(visitors) * (40 * BATCH + 1)
    stranded = [row for row in placed if row["email"] != f"{row['anonymous_id']}@example.com"]
    assert stranded == []


def test_concurrent_identifies_of_one_email_make_one_lead_with_everything(server):
    account = create_account(server.database_url)
    path = account["webhook_path"]
    visitors = [f"visitor-{uuid.uuid4()}" for _ in range(20)]
    send_all_at_once(
        server.port,
        [http_request("POST", path, orjson.dumps(track(anonymousId=v))) for v in visitors],
    )
    answers = send_all_at_once(
        server.port,
        [
            http_request("POST", path, orjson.dumps(identify("same@example.com", anonymousId=v)))
            for v in visitors
        ],
    )
    assert {status for status, _ in answers} == {200}
    leads = query(
        server.database_url, "SELECT id FROM leads WHERE account_id = :a", a=account["account_id"]
    )
    assert len(leads) == 1
    placed = query(
        server.database_url,
        "SELECT lead_id, is_cold FROM signals WHERE account_id = :a",
        a=account["account_id"],
    )
    assert Counter((r["lead_id"], r["is_cold"]) for r in placed) == {(leads[0]["id"], False): 40}


def test_clusters_merging_from_both_sides_at_once_all_succeed(server):
    account = create_account(server.database_url)
    path = account["webhook_path"]
    setup = [
        identify(None, userId="U1", anonymousId="A1"),
        identify(None, userId="U2", anonymousId="A2"),
    ]
    assert {
        s
        for s, _ in send_all_at_once(
            server.port, [http_request("POST", path, orjson.dumps(e)) for e in setup]
        )
    } == {200}
    crossing = []
    for n in range(10):
        crossing.append(identify(f"u1-{n}@example.com", userId="U1", anonymousId="A2"))
        crossing.append(identify(f"u2-{n}@example.com", userId="U2", anonymousId="A1"))
    answers = send_all_at_once(
        server.port, [http_request("POST", path, orjson.dumps(e)) for e in crossing]
    )
    assert Counter(status for status, _ in answers) == {200: 20}
