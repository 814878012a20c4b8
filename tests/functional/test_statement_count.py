"""A body's identity events are resolved set-based: the statements a body costs do not grow
with the number of identifies in it (issue: a batch of 1,000 with 150 identifies). And what
the plain lane's round trips are."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import uuid

import orjson
import psycopg
import pytest
import sqlalchemy as sa

from tests.builders import identify, track


def mixed_body(identifies: int, size: int = 1_000) -> list[dict]:
    """Tracks and identifies of distinct returning visitors, some of them known already."""
    body = []
    for n in range(size):
        visitor = f"count-{n % 400}-{uuid.uuid4().hex[:6]}" if n % 3 else f"known-{n % 50}"
        if n < identifies:
            body.append(
                identify(f"{visitor}@example.com", anonymousId=visitor, userId=f"u-{visitor}")
            )
        else:
            body.append(track(anonymousId=visitor))
    return body


def statements_for(client, api_key: str, body: list[dict], monkeypatch) -> int:
    """The statements the request itself sends, counted at the driver."""
    return len(statement_texts(client, api_key, body, monkeypatch))


def statement_texts(client, api_key: str, body: list[dict], monkeypatch) -> list[str]:
    """The text of each statement the request itself sends, at the driver, through
    SQLAlchemy or not (the delivery log's writer and the backfill worker send theirs on
    threads of their own)."""
    executed: list[str] = []
    request_thread = threading.current_thread()

    def counting(send):
        def counted(self, query, *args, **kwargs):
            if threading.current_thread() is request_thread:
                executed.append(str(query))
            return send(self, query, *args, **kwargs)

        return counted

    with monkeypatch.context() as patched:
        for method in ("execute", "executemany"):
            patched.setattr(psycopg.Cursor, method, counting(getattr(psycopg.Cursor, method)))
        response = client.post(f"/webhook/{api_key}", data=orjson.dumps(body))
    assert response.status_code == 200, response.json
    return executed


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_statements_of_a_body_do_not_grow_with_its_identifies(client, account, monkeypatch):
    # Known visitors first, so that identifies also merge into clusters on leads.
    client.post(
        f"/webhook/{account.api_key}",
        data=orjson.dumps(
            [identify(f"known-{n}@example.com", anonymousId=f"known-{n}") for n in range(50)]
        ),
    )
    few = statements_for(client, account.api_key, mixed_body(identifies=10), monkeypatch)
    many = statements_for(client, account.api_key, mixed_body(identifies=150), monkeypatch)
    assert few > 10  # the count sees them: the graph's reads go to the driver directly
    assert many == few


def graph_reads(texts: list[str]) -> int:
    """How often the graph of identity events' identifiers was read (graph._reach)."""
    return sum("identities.cluster_id IN (SELECT identities.cluster_id" in t for t in texts)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_an_identify_reads_its_graph_again_only_when_it_reached_further(
    client, account, monkeypatch
):
    """Read under the shared locks of its identifiers and its email, the graph of an identify
    is final where it links nothing new (a returning visitor's) and where it reached no
    further than those keys (a new visitor with a new email); an identify whose email's lead
    has other identifiers reads it again under the exclusive locks of all it changes."""
    first = [identify("back@example.com", anonymousId="back-1", userId="u-back")]
    texts = statement_texts(client, account.api_key, first, monkeypatch)
    assert graph_reads(texts) == 1
    again = [identify("back@example.com", anonymousId="back-1", userId="u-back")]
    texts = statement_texts(client, account.api_key, again, monkeypatch)
    assert graph_reads(texts) == 1
    assert not any("pg_try_advisory_xact_lock" in t for t in texts)
    other_device = [identify("back@example.com", anonymousId="back-2")]
    texts = statement_texts(client, account.api_key, other_device, monkeypatch)
    assert graph_reads(texts) == 2


def rehydrations(texts: list[str]) -> int:
    """How often stored cold signals were looked for to move (graph.rehydrate_stored)."""
    return sum("AS r (kind, value, lead_id, cause, position)" in t for t in texts)


def lead_trait_reads(texts: list[str]) -> int:
    """How often leads' traits were read under their row locks (leads.lock_traits)."""
    return sum(t.startswith("SELECT leads.id, leads.traits") for t in texts)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_an_identify_reads_and_moves_only_what_it_may_change(client, account, monkeypatch):
    """A lead an identify creates has the traits it was created with: they are not read back.
    A returning visitor's identify, whose identifiers are on its lead's cluster already,
    moves no cold signals: there are none left to move. A visitor's first identify moves its
    cold signals, and a second device's moves that device's."""
    client.post(f"/webhook/{account.api_key}", data=orjson.dumps(track(anonymousId="back-1")))
    first = [identify("back@example.com", anonymousId="back-1")]
    texts = statement_texts(client, account.api_key, first, monkeypatch)
    assert (rehydrations(texts), lead_trait_reads(texts)) == (1, 0)
    again = [identify("back@example.com", anonymousId="back-1")]
    texts = statement_texts(client, account.api_key, again, monkeypatch)
    assert (rehydrations(texts), lead_trait_reads(texts)) == (0, 1)
    other_device = [identify("back@example.com", anonymousId="back-2")]
    texts = statement_texts(client, account.api_key, other_device, monkeypatch)
    assert (rehydrations(texts), lead_trait_reads(texts)) == (1, 1)


def round_trips_of(engine, client, api_key: str, body: dict) -> int:
    """The round trips of the request's own statements, from libpq's trace of every
    connection it checks out: each Sync waits for the server's ReadyForQuery, as does a
    simple-protocol Query (the delivery log's writer has a thread of its own)."""
    request_thread = threading.current_thread()
    with contextlib.ExitStack() as files:
        traces: list[tuple[object, object]] = []

        def trace(dbapi_connection, *_):
            if threading.current_thread() is request_thread:
                file = files.enter_context(tempfile.TemporaryFile(mode="w+"))
                dbapi_connection.pgconn.trace(file.fileno())
                traces.append((dbapi_connection.pgconn, file))

        sa.event.listen(engine, "checkout", trace)
        try:
            response = client.post(f"/webhook/{api_key}", data=orjson.dumps(body))
        finally:
            sa.event.remove(engine, "checkout", trace)
        assert response.status_code == 200, response.json
        waits = 0
        for pgconn, file in traces:
            pgconn.untrace()
            file.seek(0)
            sent = [line.split("\t") for line in file.read().splitlines() if "\tF\t" in line]
            waits += sum(fields[3] in ("Sync", "Query") for fields in sent)
        return waits


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_plain_body_takes_two_round_trips(engine, client, account):
    """The plain lane's two pipelines are its only round trips: the transaction's BEGIN
    travels with the first and its COMMIT with the second (the driver's own BEGIN and
    commit() would wait for answers of their own)."""
    for n in range(6):  # past the driver's prepare threshold, as a running server is
        client.post(f"/webhook/{account.api_key}", data=orjson.dumps(track(anonymousId=f"w{n}")))
    assert round_trips_of(engine, client, account.api_key, track(anonymousId="plain-1")) == 2
