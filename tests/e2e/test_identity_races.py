"""Identity resolution under real concurrency: gunicorn workers racing on Postgres."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import orjson
import pytest
import sqlalchemy as sa

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
    placed = _placements(server.database_url, account["account_id"])
    assert len(placed) == len(visitors) * (40 * BATCH + 1)
    stranded = _off_their_lead(placed)
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


def _off_their_lead(placed: list[sa.RowMapping]) -> list[sa.RowMapping]:
    """Signals not on the lead of their visitor (whose email is <anonymousId>@example.com)."""
    return [row for row in placed if row["email"] != f"{row['anonymous_id']}@example.com"]


def _placements(database_url: str, account_id: int) -> list[sa.RowMapping]:
    return query(
        database_url,
        "SELECT s.anonymous_id, s.user_id, s.event_type, s.is_cold, l.email FROM signals s "
        "LEFT JOIN leads l ON l.account_id = s.account_id AND l.id = s.lead_id "
        "WHERE s.account_id = :a",
        a=account_id,
    )


def test_fifty_visitors_each_racing_their_own_identify_strand_nothing(server):
    """Fifty visitors of one account, each with forty tracks (eight bodies of five) around
    its own identify, all sent at once: visitors no longer wait for each other, and still
    every track ends on its visitor's lead. Without the identity locks some are left cold."""
    account = create_account(server.database_url, "--signal-limit", "1000000")
    path = account["webhook_path"]
    raws = []
    for n in range(50):
        visitor = f"fifty-{n}-{uuid.uuid4()}"
        bodies = [
            http_request("POST", path, orjson.dumps([track(anonymousId=visitor) for _ in range(5)]))
            for _ in range(8)
        ]
        bodies.insert(
            4,
            http_request(
                "POST", path, orjson.dumps(identify(f"{visitor}@example.com", anonymousId=visitor))
            ),
        )
        raws += bodies
    answers = send_all_at_once(server.port, raws)
    assert Counter(status for status, _ in answers) == {200: len(raws)}
    placed = _placements(server.database_url, account["account_id"])
    assert len(placed) == 50 * 41
    stranded = _off_their_lead(placed)
    assert stranded == []


def test_identifies_merging_clusters_from_all_sides_at_once_give_the_body_order_graph(server):
    """For each of twenty people: A with userId U, U with anonymousId B, B with an email, and
    tracks of A, U and B, all sent at once. No 5xx, and whatever the order they commit in, the
    graph is the one these calls give in any order: A, U and B in one cluster on the email's
    lead, and every signal on it."""
    account = create_account(server.database_url, "--signal-limit", "1000000")
    path = account["webhook_path"]
    people = []
    raws = []
    for n in range(20):
        a, u, b = (f"{part}-{n}-{uuid.uuid4()}" for part in ("A", "U", "B"))
        email = f"person-{n}-{uuid.uuid4().hex[:8]}@example.com"
        people.append((a, u, b, email))
        for body in (
            identify(None, anonymousId=a, userId=u),
            identify(None, anonymousId=b, userId=u),
            identify(email, anonymousId=b),
            [track(anonymousId=a) for _ in range(3)],
            [track(anonymousId=b) for _ in range(3)],
            [track(anonymousId=f"other-{n}", userId=u) for _ in range(3)],
        ):
            raws.append(http_request("POST", path, orjson.dumps(body)))
    answers = send_all_at_once(server.port, raws)
    assert Counter(status for status, _ in answers) == {200: len(raws)}
    graph = query(
        server.database_url,
        "SELECT i.kind, i.value, l.email FROM identities i "
        "JOIN identity_clusters c ON c.account_id = i.account_id AND c.id = i.cluster_id "
        "LEFT JOIN leads l ON l.account_id = c.account_id AND l.id = c.lead_id "
        "WHERE i.account_id = :a",
        a=account["account_id"],
    )
    lead_of = {(row["kind"], row["value"]): row["email"] for row in graph}
    for a, u, b, email in people:
        assert lead_of[("anonymous_id", a)] == email
        assert lead_of[("user_id", u)] == email
        assert lead_of[("anonymous_id", b)] == email
    placed = _placements(server.database_url, account["account_id"])
    assert len(placed) == 20 * 12
    assert [row for row in placed if row["is_cold"] or row["email"] is None] == []


def test_a_rule_backfill_racing_new_tracks_strands_nothing(server):
    """Thirty visitors' forms wait unmapped and cold; a rule that takes their email is created
    while fifty of each visitor's tracks arrive, all at once. The backfill links each visitor
    as it maps the form, under the same identity locks as ingestion: when it is done, every
    track is on its visitor's lead, none cold."""
    account = create_account(server.database_url, "--signal-limit", "1000000")
    path = account["webhook_path"]
    visitors = [f"bf-race-{n}-{uuid.uuid4().hex[:8]}" for n in range(30)]
    forms = [
        track("Form Submitted", anonymousId=v, properties={"email": f"{v}@example.com"})
        for v in visitors
    ]
    assert {
        s
        for s, _ in send_all_at_once(server.port, [http_request("POST", path, orjson.dumps(forms))])
    } == {200}
    rule = {
        "name": "Forms",
        "event_name": "Form Submitted",
        "fields": {"email": "properties.email"},
    }
    admin = {"Authorization": f"Bearer {account['admin_token']}"}
    raws = [http_request("POST", "/admin/rules", orjson.dumps(rule), admin)]
    for visitor in visitors:
        raws += [
            http_request(
                "POST", path, orjson.dumps([track(anonymousId=visitor) for _ in range(10)])
            )
            for _ in range(5)
        ]
    answers = send_all_at_once(server.port, raws)
    assert answers[0][0] == 201
    assert Counter(status for status, _ in answers[1:]) == {200: len(raws) - 1}
    rule_id = answers[0][1]["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, body = send_all_at_once(
            server.port, [http_request("GET", f"/admin/rules/{rule_id}", b"", admin)]
        )[0]
        if body["backfill"]["status"] == "done":
            break
        time.sleep(0.2)
    assert body["backfill"]["status"] == "done"
    placed = _placements(server.database_url, account["account_id"])
    assert len(placed) == 30 * 51
    stranded = _off_their_lead(placed)
    assert stranded == []


def test_returning_visitors_identifies_at_once_lose_no_trait_and_strand_no_track(server):
    """Returning visitors' identifies lock their identifiers shared, as tracks do, so they no
    longer wait for each other. Ten visitors, identified once before; then for each, twelve
    bodies of three identifies that each set a trait of their own, with tracks around them,
    all sent at once: every lead ends with all 36 of its traits, and every track on its lead.
    With the traits merged as read before the lead's row lock, traits are lost."""
    account = create_account(server.database_url, "--signal-limit", "1000000")
    path = account["webhook_path"]
    visitors = [f"returning-{n}-{uuid.uuid4()}" for n in range(10)]

    def identifies(visitor: str, traits: dict[str, object]) -> list[dict]:
        email = f"{visitor}@example.com"
        return [identify(email, anonymousId=visitor, traits={"email": email, **traits})]

    first = [http_request("POST", path, orjson.dumps(identifies(v, {}))) for v in visitors]
    assert {status for status, _ in send_all_at_once(server.port, first)} == {200}
    raws = []
    for visitor in visitors:
        for body in range(12):
            events = [track(anonymousId=visitor)]
            for n in range(3):
                events += identifies(visitor, {f"t{body * 3 + n}": n})
            events.append(track(anonymousId=visitor))
            raws.append(http_request("POST", path, orjson.dumps(events)))
    answers = send_all_at_once(server.port, raws)
    assert Counter(status for status, _ in answers) == {200: len(raws)}
    leads = query(
        server.database_url,
        "SELECT email, traits FROM leads WHERE account_id = :a",
        a=account["account_id"],
    )
    assert len(leads) == len(visitors)
    for lead in leads:
        assert sorted(k for k in lead["traits"] if k.startswith("t")) == sorted(
            f"t{n}" for n in range(36)
        ), lead["email"]
    placed = _placements(server.database_url, account["account_id"])
    assert len(placed) == len(visitors) * (1 + 12 * 5)
    stranded = _off_their_lead(placed)
    assert stranded == []


@pytest.mark.parametrize("run", range(2))
def test_tracks_riding_with_returning_identifies_race_their_own_identify(server, run):
    """Bodies whose identify is a returning visitor's, which links nothing, read the graph
    once, under the shared locks of every identifier they hold (resolve.lock_then_read). Their
    tracks of new visitors race each visitor's first identify, all sent at once: a track
    placed cold by a read taken before its visitor's lock would be left cold. Without those
    shared locks some are, in most runs."""
    account = create_account(server.database_url, "--signal-limit", "1000000")
    path = account["webhook_path"]
    returning = [f"back-{n}-{uuid.uuid4()}" for n in range(10)]
    setup = [identify(f"{r}@example.com", anonymousId=r) for r in returning]
    assert {s for s, _ in send_all_at_once(server.port, [_post(path, setup)])} == {200}
    visitors = [f"rider-{uuid.uuid4()}" for _ in range(10)]
    raws = []
    for visitor in visitors:
        bodies = [
            _post(
                path,
                [
                    identify(f"{back}@example.com", anonymousId=back),
                    *(track(anonymousId=visitor) for _ in range(BATCH)),
                ],
            )
            for back in returning * 2
        ]
        bodies.insert(10, _post(path, identify(f"{visitor}@example.com", anonymousId=visitor)))
        raws += bodies
    answers = send_all_at_once(server.port, raws)
    assert Counter(status for status, _ in answers) == {200: len(raws)}
    placed = _placements(server.database_url, account["account_id"])
    assert len(placed) == len(returning) + len(visitors) * (20 * (BATCH + 1) + 1)
    stranded = _off_their_lead(placed)
    assert stranded == []


def _post(path: str, body: object) -> bytes:
    return http_request("POST", path, orjson.dumps(body))
