"""Backfill as a job: readable, cancellable, claimed by one runner at a time within a cap per
account, resumed without a request; and reading a rule starts nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from receiver import db
from receiver.config import Settings
from receiver.rules import backfill
from tests.builders import track
from tests.conftest import make_account
from tests.functional.test_admin_api import DEMO_RULE, auth, form, send
from tests.functional.test_webhook import BOTH_STORES


@pytest.fixture(scope="module")
def postgres_url(postgres_url: str) -> Iterator[str]:
    """A database of this module's own: the e2e tests' gunicorn, up for the whole run, has
    backfill workers that would claim these tests' jobs in the shared one."""
    base = sa.make_url(postgres_url)
    name = f"{base.database}_jobs"
    libpq = base.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(libpq, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(Settings(database_url=url))
    db.upgrade_schema(engine, lambda line: None)
    engine.dispose()
    yield url
    with psycopg.connect(libpq, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(database_url: str) -> Settings:
    """No worker thread: the test decides when backfills run."""
    return Settings(database_url=database_url, backfill_worker=0)


@pytest.fixture(autouse=True)
def no_backfill_left_by_other_tests(engine):
    """Claims look at every account: what earlier tests left pending is put aside."""
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE rules SET backfill_status = 'cancelled' "
                "WHERE backfill_status IN ('pending', 'running')"
            )
        )


def rule_of(client, account, rule_id):
    return client.get(f"/admin/rules/{rule_id}", headers=auth(account)).json


def run_backfills(app):
    result = app.test_cli_runner().invoke(args=["run-backfills"])
    assert result.exit_code == 0, result.output
    return result.output


def set_backfill(engine, account, rule_id, **values):
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE rules SET "
                + ", ".join(f"backfill_{name} = :{name}" for name in values)
                + " WHERE account_id = :a AND id = :r"
            ),
            {"a": account.account_id, "r": rule_id, **values},
        )


@BOTH_STORES
def test_reading_a_rule_starts_no_backfill(client, account):
    send(client, account, form())
    rule = client.post("/admin/rules", json=DEMO_RULE, headers=auth(account)).json
    for _ in range(5):
        read = rule_of(client, account, rule["id"])
        time.sleep(0.05)
    assert read["backfill"]["status"] == "pending" and read["backfill"]["started_at"] is None
    assert read["backfill"]["scanned"] == 0


@BOTH_STORES
def test_run_backfills_runs_pending_and_stale_ones(app, client, account, engine):
    send(client, account, form(), track())
    pending = client.post("/admin/rules", json=DEMO_RULE, headers=auth(account)).json
    other = make_account(engine)
    send(client, other, form("crashed@example.com"))
    crashed = client.post("/admin/rules", json=DEMO_RULE, headers=auth(other)).json
    # Its runner died mid-way: running, with a heartbeat long gone.
    set_backfill(
        engine,
        other,
        crashed["id"],
        status="running",
        heartbeat_at=datetime.now(UTC) - timedelta(minutes=5),
    )
    output = run_backfills(app)
    assert f"backfill of rule {pending['id']} (account {account.account_id}): done" in output
    assert f"backfill of rule {crashed['id']} (account {other.account_id}): done" in output
    assert output.rstrip().endswith("backfills run: 2")
    assert rule_of(client, account, pending["id"])["backfill"]["mapped"] == 1
    assert rule_of(client, other, crashed["id"])["backfill"]["mapped"] == 1
    assert run_backfills(app).strip() == "backfills run: 0"


@BOTH_STORES
def test_a_cancelled_backfill_stops_and_keeps_what_it_mapped(app, client, account, engine):
    send(client, account, *[form(f"c{n}@example.com") for n in range(3)])
    rule = client.post("/admin/rules", json=DEMO_RULE, headers=auth(account)).json
    cancelled = client.post(f"/admin/rules/{rule['id']}/backfill/cancel", headers=auth(account))
    assert cancelled.status_code == 200
    assert cancelled.json["backfill"]["status"] == "cancelled"
    assert cancelled.json["backfill"]["finished_at"].endswith("+00:00")
    assert run_backfills(app).strip() == "backfills run: 0"
    assert rule_of(client, account, rule["id"])["backfill"]["scanned"] == 0
    # A running one stops at its next chunk.
    client.patch(
        f"/admin/rules/{rule['id']}",
        json={"priority": 9, "signal": {"score": 3}},
        headers=auth(account),
    )
    job = db.run_transaction(engine, lambda s: backfill.claim_next(s, datetime.now(UTC), 1))
    assert job == (account.account_id, rule["id"])
    client.post(f"/admin/rules/{rule['id']}/backfill/cancel", headers=auth(account))
    state = backfill.run_claimed(engine, *job, policy=_policy(app))
    assert state == "cancelled"
    assert rule_of(client, account, rule["id"])["backfill"]["scanned"] == 0
    # Cancelling a finished one changes nothing.
    client.patch(f"/admin/rules/{rule['id']}", json={"signal": {"score": 4}}, headers=auth(account))
    run_backfills(app)
    done = client.post(f"/admin/rules/{rule['id']}/backfill/cancel", headers=auth(account)).json
    assert done["backfill"]["status"] == "done" and done["backfill"]["mapped"] == 3


def _policy(app):
    from receiver.identity.resolve import identity_policy

    return identity_policy(app.extensions["receiver.settings"])


@BOTH_STORES
def test_an_account_runs_at_most_its_cap_of_backfills_and_others_go_first(client, account, engine):
    mine = [
        client.post("/admin/rules", json={**DEMO_RULE, "name": f"r{n}"}, headers=auth(account)).json
        for n in range(3)
    ]
    other = make_account(engine)
    theirs = client.post("/admin/rules", json=DEMO_RULE, headers=auth(other)).json
    now = datetime.now(UTC)

    def claim(cap):
        return db.run_transaction(engine, lambda s: backfill.claim_next(s, now, cap))

    assert claim(1) == (account.account_id, mine[0]["id"])
    assert claim(1) == (other.account_id, theirs["id"])  # mine[1] waits for mine[0]
    assert claim(1) is None
    assert claim(2) == (account.account_id, mine[1]["id"])
    claimed = rule_of(client, account, mine[0]["id"])["backfill"]
    assert claimed["status"] == "running" and claimed["started_at"].endswith("+00:00")


def test_claims_racing_on_postgres_never_pass_the_cap(client, account, engine):
    for n in range(6):
        client.post("/admin/rules", json={**DEMO_RULE, "name": f"r{n}"}, headers=auth(account))
    now, barrier, claimed = datetime.now(UTC), threading.Barrier(6), []

    def claim():
        barrier.wait()
        claimed.append(db.run_transaction(engine, lambda s: backfill.claim_next(s, now, 2)))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert 1 <= len([job for job in claimed if job is not None]) <= 2
    while db.run_transaction(engine, lambda s: backfill.claim_next(s, now, 2)):
        pass
    with engine.connect() as connection:
        running = connection.execute(
            sa.text(
                "SELECT count(*) FROM rules WHERE account_id = :a AND backfill_status = 'running'"
            ),
            {"a": account.account_id},
        ).scalar_one()
    assert running == 2


@BOTH_STORES
def test_many_pending_rules_of_one_account_hold_no_other_account_back(client, account, engine):
    for n in range(backfill.CLAIM_CANDIDATES + 5):
        client.post("/admin/rules", json={**DEMO_RULE, "name": f"r{n}"}, headers=auth(account))
    other = make_account(engine)
    theirs = client.post("/admin/rules", json=DEMO_RULE, headers=auth(other)).json
    now = datetime.now(UTC)
    first = db.run_transaction(engine, lambda s: backfill.claim_next(s, now, 1))
    second = db.run_transaction(engine, lambda s: backfill.claim_next(s, now, 1))
    assert first[0] == account.account_id
    assert second == (other.account_id, theirs["id"])
