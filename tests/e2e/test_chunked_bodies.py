"""Bodies sent without Content-Length (chunked), through gunicorn: the size limit holds for
them as for any other body."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import requests

from tests.builders import track
from tests.e2e.conftest import count_signals, create_account

LIMIT = 16 * 1024 * 1024


def chunked(body: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    """A generator body: requests sends it with Transfer-Encoding: chunked."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def post_chunked(server, account, body: bytes) -> requests.Response:
    return requests.post(server.url + account["webhook_path"], data=chunked(body), timeout=60)


def test_a_chunked_body_within_the_limit_is_stored(server):
    account = create_account(server.database_url)
    response = post_chunked(server, account, orjson.dumps([track(), track()]))
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 2


def test_a_chunked_body_over_the_limit_is_413_and_nothing_is_stored(server):
    account = create_account(server.database_url)
    # Valid JSON once cut at the limit: a reader that stops there would store the event.
    body = orjson.dumps(track()) + b" " * LIMIT
    response = post_chunked(server, account, body)
    assert response.status_code == 413, response.text
    assert response.json()["message"]
    assert count_signals(server.database_url, account["account_id"]) == 0


def test_a_chunked_body_of_exactly_the_limit_is_accepted(server):
    account = create_account(server.database_url)
    event = orjson.dumps(track())
    response = post_chunked(server, account, event + b" " * (LIMIT - len(event)))
    assert response.status_code == 200, response.text
    assert count_signals(server.database_url, account["account_id"]) == 1
