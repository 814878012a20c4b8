"""A body's identity events are resolved set-based: the statements a body costs do not grow
with the number of identifies in it (issue: a batch of 1,000 with 150 identifies)."""

from __future__ import annotations

import threading
import uuid

import orjson
import psycopg
import pytest

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
def test_a_returning_visitors_identify_reads_its_graph_once(client, account, monkeypatch):
    """Read under the shared locks of its identifiers, the graph of an identify that links
    nothing new is final; a visitor's first identify, which links, reads it again under the
    exclusive locks of all it changes."""
    first = [identify("back@example.com", anonymousId="back-1", userId="u-back")]
    texts = statement_texts(client, account.api_key, first, monkeypatch)
    assert graph_reads(texts) == 2
    again = [identify("back@example.com", anonymousId="back-1", userId="u-back")]
    texts = statement_texts(client, account.api_key, again, monkeypatch)
    assert graph_reads(texts) == 1
    assert not any("pg_try_advisory_xact_lock" in t for t in texts)
