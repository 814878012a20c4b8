"""The floor: the least work any receiver of these webhooks has to do, to compare against.

Parse the body, hash each event's canonical JSON (sha256), and insert the events with
psycopg 3 into one table that deduplicates on the hash: one statement and one commit per
request, a batch included. No authentication, no identity resolution, no plan limit. Served
by the same gunicorn settings as the receiver:

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/DB gunicorn bench.floor_app:app

The run creates the table (bench/run.py FLOOR_TABLE).
"""

from __future__ import annotations

import hashlib
import os

import orjson
import psycopg
from flask import Flask, Response, request

# The receiver's SQLAlchemy URL works here too: psycopg takes the plain libpq form.
DSN = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")

# One statement for any number of events: the arrays travel as two parameters.
INSERT = """
    INSERT INTO floor_events (content_hash, payload, received_at)
    SELECT content_hash, payload::jsonb, now()
    FROM unnest(%s::bytea[], %s::text[]) AS batch (content_hash, payload)
    ON CONFLICT (content_hash) DO NOTHING
"""

app = Flask(__name__)
_connection: psycopg.Connection | None = None


def connection() -> psycopg.Connection:
    """One connection per worker process, opened after gunicorn forks it."""
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(DSN)
    return _connection


def json_response(body: dict, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


@app.post("/webhook/<api_key>")
def webhook(api_key: str) -> Response:
    try:
        body = orjson.loads(request.get_data())
    except orjson.JSONDecodeError:
        return json_response({"message": "not JSON"}, 400)
    events = body if isinstance(body, list) else [body]
    canonical = [orjson.dumps(event, option=orjson.OPT_SORT_KEYS) for event in events]
    hashes = [hashlib.sha256(text).digest() for text in canonical]
    conn = connection()
    with conn.transaction():
        stored = conn.execute(INSERT, (hashes, [text.decode() for text in canonical])).rowcount
    return json_response({"received": len(events), "stored": stored})


@app.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "ok"})
