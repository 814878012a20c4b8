#!/usr/bin/env python3
"""Self-check of the realistic mix: what bench/mix.lua sends, and the canary that run.py reads.

    .venv/bin/python bench/check_mix.py          # about 10 seconds; exit status 1 on a failure

The traffic: wrk runs mix.lua for a second at a time against a local server that records every
body, and the check reads them back: the shares of track, page and identify, the event size,
unique messageIds, visitors that recur and stay with one account, one email (and userId) per
visitor, timestamps in order. The canary: on a fresh database, a visitor whose identify was
stored and who still has a cold signal must be counted (so the canary can fail).
"""

from __future__ import annotations

import collections
import json
import statistics
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import run

BENCH = Path(__file__).resolve().parent
ACCOUNT_PATHS = ("/webhook/a", "/webhook/b", "/webhook/c")
failures: list[str] = []
recorded: list[tuple[str, bytes]] = []
recording = threading.Lock()


def check(ok: bool, text: str) -> None:
    print(f"{'PASS' if ok else 'FAIL'} {text}")
    if not ok:
        failures.append(text)


class Recorder(BaseHTTPRequestHandler):
    """Answers 200 to every POST and keeps (path, body)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with recording:
            recorded.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """wrk drops its connections when it stops: no traceback for that."""


def send(url: str, seed: str, batch: int, kind: str) -> list[tuple[str, bytes]]:
    """One second of mix.lua; the bodies it sent."""
    recorded.clear()
    command = ["wrk", "-t", "2", "-c", "4", "-d", "1s", "-s", str(BENCH / "mix.lua"), url]
    args = [uuid.uuid4().hex[:12], seed, str(batch), kind, ",".join(ACCOUNT_PATHS)]
    done = subprocess.run([*command, "--", *args], capture_output=True, text=True, check=False)
    check(done.returncode == 0 and "BENCH {" in done.stdout, f"wrk ran mix.lua ({kind}, {batch})")
    with recording:
        return list(recorded)


def events_of(bodies: list[tuple[str, bytes]], batch: int) -> list[tuple[str, dict]]:
    events = []
    for path, raw in bodies:
        body = json.loads(raw)
        if batch:
            check_once(isinstance(body, list) and len(body) == batch, f"batches of {batch}")
            events += [(path, event) for event in body]
        else:
            check_once(isinstance(body, dict), "single events are JSON objects")
            events.append((path, body))
    return events


_seen: set[str] = set()


def check_once(ok: bool, text: str) -> None:
    """Checks made per body: reported once, or at the first body that fails."""
    if not ok or text not in _seen:
        _seen.add(text)
        check(ok, text)


def visitor(event: dict) -> int:
    return int(event["anonymousId"].rsplit("-", 1)[1])


def check_mix(events: list[tuple[str, dict]]) -> None:
    types = collections.Counter(event["type"] for _, event in events)
    shares = {kind: types[kind] / len(events) for kind in ("track", "page", "identify")}
    check(
        abs(shares["track"] - 0.60) < 0.05
        and abs(shares["page"] - 0.25) < 0.05
        and abs(shares["identify"] - 0.15) < 0.04,
        f"60/25/15 track/page/identify over {len(events):,} events: "
        + ", ".join(f"{kind} {share:.0%}" for kind, share in shares.items()),
    )
    sizes = [len(json.dumps(event, separators=(",", ":"))) for _, event in events]
    mean = statistics.mean(sizes)
    check(1000 <= mean <= 1250, f"about 1.1 KB an event: mean {mean:.0f} bytes")
    check(
        all(
            "page" in e["context"] and "campaign" in e["context"] and "userAgent" in e["context"]
            for _, e in events
        ),
        "every event has context.page, context.campaign and context.userAgent",
    )
    check(
        all("properties" in e for _, e in events if e["type"] != "identify"),
        "tracks and pages have properties",
    )


def check_visitors(events: list[tuple[str, dict]]) -> None:
    check(
        all(visitor(e) % len(ACCOUNT_PATHS) == ACCOUNT_PATHS.index(p) for p, e in events),
        "every event goes to its visitor's account (visitor v to account v mod accounts)",
    )
    ids = collections.defaultdict(set)
    for _, event in events:
        if event["type"] == "identify":
            ids[event["anonymousId"]].add((event["traits"].get("email"), event.get("userId")))
    check(
        bool(ids) and all(len(seen) == 1 and next(iter(seen))[0] for seen in ids.values()),
        f"every identify has traits.email, the same (and the same userId) for a visitor: "
        f"{len(ids):,} visitors",
    )
    users = {visitor(e) for _, e in events if "userId" in e}
    known = [e for _, e in events if e["type"] == "identify" and visitor(e) % 5 < 2]
    check(
        bool(users) and all(v % 5 < 2 for v in users) and all("userId" in e for e in known),
        "two visitors in five have a userId, in every identify of theirs",
    )


def check_times(events: list[tuple[str, dict]], batch: int) -> None:
    def parsed(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    spread = timedelta(seconds=122 if batch else 2)
    check(
        all(
            timedelta(0) < parsed(e["sentAt"]) - parsed(e["timestamp"]) <= spread
            and e["timestamp"] == e["originalTimestamp"]
            for _, e in events
        ),
        f"timestamps before sentAt, within {spread.seconds} s ({'batch' if batch else 'single'})",
    )


def check_traffic() -> None:
    server = QuietServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    seed = uuid.uuid4().hex[:8]
    try:
        single = events_of(send(url, seed, 0, "mix"), 0)
        batches = events_of(send(url, seed, 100, "mix"), 100)
        identifies = events_of(send(url, seed, 0, "identify"), 0)
    finally:
        server.shutdown()
    everything = single + batches + identifies
    message_ids = [event["messageId"] for _, event in everything]
    check(len(set(message_ids)) == len(message_ids), "every messageId unique across wrk runs")
    check_mix(batches)
    check_visitors(everything)
    check_times(single, 0)
    check_times(batches, 100)
    check({e["type"] for _, e in identifies} == {"identify"}, "identify-only sends identifies")
    recurring = {e["anonymousId"] for _, e in single} & {e["anonymousId"] for _, e in batches}
    check(bool(recurring), f"visitors recur from one wrk run to the next: {len(recurring):,}")
    visitors = {e["anonymousId"] for _, e in everything}
    check(len(visitors) <= 2000, f"at most 2,000 visitors: {len(visitors):,}")


def check_canary() -> None:
    database = f"bench_check_{uuid.uuid4().hex[:8]}"
    run.sql("postgres", f"CREATE DATABASE {database}")
    try:
        run.receiver_cli(database, "init-db")
        account = run.create_account(database, "Canary")["account_id"]
        check(run.sql(database, run.IDENTIFIED_LEFT_COLD)[0][0] == 0, "canary: no visitor yet")
        cold = {"account": account, "anon": "visitor-1", "count": 3}
        run.sql(database, run.COLD_SIGNALS, cold)
        run.sql(
            database,
            "INSERT INTO signals (account_id, source, event_type, anonymous_id, message_id,"
            " content_hash, payload, occurred_at, received_at, is_cold)"
            " SELECT %(account)s, 'segment', 'identify', 'visitor-1', 'id-1',"
            " sha256('id-1'::bytea), '{}', now(), now(), false",
            {"account": account},
        )
        found = run.sql(database, run.IDENTIFIED_LEFT_COLD)[0]
        check(
            tuple(found) == (1, 3, 1),
            f"canary counts the cold signals of an identified visitor: {found}",
        )
    finally:
        run.sql("postgres", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def main() -> int:
    check_traffic()
    check_canary()
    print(f"\n{len(failures)} failed" if failures else "\nall passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
