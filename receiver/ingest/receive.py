"""One request's body, from raw bytes to an Outcome: parsed, authenticated and stored by
pipeline.py, in a transaction that settles the whole body (retried from scratch on a deadlock
or a lost lock race: nothing passes from one attempt to the next but the parsed body).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import sqlalchemy as sa
from sqlmodel import Session
from werkzeug.datastructures import Headers

from receiver.accounts import Sender, find_sender
from receiver.config import Settings
from receiver.db import run_transaction
from receiver.errors import BadRequest, PayloadTooLarge, ReceiverError, Unauthorized
from receiver.identity.resolve import identity_policy
from receiver.ingest.parse import parse_events
from receiver.ingest.pipeline import (
    Outcome,
    Prepared,
    invalid_result,
    prepare,
    store_body,
    with_client_ip,
)
from receiver.ingest.segment import InvalidEvent
from receiver.ingest.signature import secret_presented
from receiver.refusals import refuse_unusable_api_key, secret_refusal


@dataclass
class Seen:
    """What the caller learns of a request even when it is refused: the account of a key the
    store knows (set before its secret is checked) and the body as parsed (the delivery log
    and the metrics read them)."""

    account_id: int | None = None
    prepared: Prepared | None = None


def receive(
    engine: sa.Engine,
    settings: Settings,
    api_key: str | None,
    raw: bytes,
    headers: Headers | Mapping[str, str],
    now: datetime,
    default_type: str | None = None,
    client_ip: str | None = None,
    seen: Seen | None = None,
) -> Outcome:
    """Store the body's events; raises a ReceiverError for what the sender must be told.
    client_ip: the address to put in each event's context.ip where it has none; seen, filled
    in as the request goes (see Seen)."""
    refuse_unusable_api_key(api_key)
    seen = seen if seen is not None else Seen()
    check_secret = partial(_check_secret, headers=headers, raw=raw)
    try:
        prepared = parse(raw, now, settings, default_type)
        if client_ip is not None:
            prepared = with_client_ip(prepared, client_ip)
    except ReceiverError as problem:
        # A bad body from an unknown sender is answered 401: the key is checked first.
        run_transaction(engine, lambda session: _authenticate(session, api_key, check_secret, seen))
        raise problem from None
    seen.prepared = prepared
    policy = identity_policy(settings)

    def general(session: Session) -> Outcome:
        sender = _authenticate(session, api_key, check_secret, seen)
        return store_body(session, sender, prepared, now, policy)

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
    session: Session,
    api_key: str | None,
    check_secret: Callable[[str | None], None],
    seen: Seen,
) -> Sender:
    sender = find_sender(session, api_key) if api_key else None
    if sender is None:
        raise Unauthorized()
    seen.account_id = sender.account_id
    check_secret(sender.secret)
    return sender


def _check_secret(secret: str | None, headers: Headers | Mapping[str, str], raw: bytes) -> None:
    if secret is not None and not secret_presented(secret, headers, raw):
        raise Unauthorized(secret_refusal(headers))
