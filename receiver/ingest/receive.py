"""One request's body, from raw bytes to an Outcome: parsed, authenticated and stored in a
transaction that settles the whole body (retried from scratch on a deadlock or a lost lock
race: nothing passes from one attempt to the next but the parsed body).

A plain body on Postgres is sent by plain.py, in two round trips; pipeline.py stores every
other body, and one plain.py hands back (its rules give it lead fields, or it may not fit
in the month's limit), from scratch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial

import sqlalchemy as sa
from sqlmodel import Session
from werkzeug.datastructures import Headers

from receiver.accounts import Sender, find_sender, known_key
from receiver.config import Settings
from receiver.db import run_on_driver, run_transaction
from receiver.errors import BadRequest, PayloadTooLarge, ReceiverError, Unauthorized
from receiver.identity.resolve import identity_policy
from receiver.ingest import plain
from receiver.ingest.parse import parse_events
from receiver.ingest.pipeline import (
    Outcome,
    Prepared,
    begin,
    invalid_result,
    prepare,
    store_body,
    with_client_ip,
)
from receiver.ingest.segment import InvalidEvent
from receiver.ingest.signature import secret_presented
from receiver.ingest.store import period_of
from receiver.refusals import refuse_unusable_api_key, secret_refusal


def receive(
    engine: sa.Engine,
    settings: Settings,
    api_key: str | None,
    raw: bytes,
    headers: Headers | Mapping[str, str],
    now: datetime,
    default_type: str | None = None,
    client_ip: str | None = None,
) -> Outcome:
    """Store the body's events; raises a ReceiverError for what the sender must be told.
    client_ip: the address to put in each event's context.ip where it has none."""
    refuse_unusable_api_key(api_key)
    if not known_key(engine, api_key):
        raise Unauthorized()  # before the body is parsed: a made-up key costs one lookup
    check_secret = partial(_check_secret, headers=headers, raw=raw)
    try:
        prepared = parse(raw, now, settings, default_type)
        if client_ip is not None:
            prepared = with_client_ip(prepared, client_ip)
    except ReceiverError as problem:
        # A bad body from an unknown sender is answered 401: the key is checked first.
        run_transaction(engine, lambda session: _authenticate(session, api_key, check_secret))
        raise problem from None
    if plain.applies(engine.dialect.name, prepared):
        lane = partial(plain.store_body, api_key=api_key, check_secret=check_secret)
        outcome = run_on_driver(engine, lambda c: lane(c, prepared=prepared, now=now))
        if outcome is not None:
            return outcome
    policy = identity_policy(settings)
    period_start, _ = period_of(now)

    def general(session: Session) -> Outcome:
        begun = begin(session, api_key or "", period_start) if api_key else None
        if begun is None:
            raise Unauthorized()
        check_secret(begun.sender.secret)
        return store_body(session, begun, prepared, now, policy)

    return run_transaction(engine, general)


def parse(raw: bytes, now: datetime, settings: Settings, default_type: str | None) -> Prepared:
    events, _ = parse_events(raw)
    if len(events) > settings.max_batch_events:
        raise PayloadTooLarge(
            f"More than {settings.max_batch_events} events in one body: send smaller batches."
        )
    prepared = prepare(events, now, settings.max_event_bytes, default_type)
    if not prepared.drafts:
        results = [invalid_result(i) for i in prepared.items if isinstance(i, InvalidEvent)]
        raise BadRequest(f"No valid event in this body: {results[0]['message']}", results=results)
    return prepared


def _authenticate(
    session: Session, api_key: str | None, check_secret: Callable[[str | None], None]
) -> Sender:
    sender = find_sender(session, api_key) if api_key else None
    if sender is None:
        raise Unauthorized()
    check_secret(sender.secret)
    return sender


def _check_secret(secret: str | None, headers: Headers | Mapping[str, str], raw: bytes) -> None:
    if secret is not None and not secret_presented(secret, headers, raw):
        raise Unauthorized(secret_refusal(headers))
