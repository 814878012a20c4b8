"""One request's body, from raw bytes to an Outcome: parsed, authenticated and stored in a
transaction that settles the whole body (retried from scratch on a deadlock or a lost lock
race: nothing passes from one attempt to the next but the parsed body).

A plain body on Postgres is sent by plain.py, in two round trips; pipeline.py stores every
other body, and one plain.py hands back (its rules give it lead fields, or it may not fit
in the month's limit), from scratch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial

import sqlalchemy as sa
from sqlmodel import Session
from werkzeug.datastructures import Headers

from receiver.accounts import known_key
from receiver.config import Settings
from receiver.credentials import API_KEY_KIND, parse_credential
from receiver.db import run_on_driver, run_transaction
from receiver.errors import BadRequest, PayloadTooLarge, ReceiverError, Unauthorized
from receiver.events import Draft, InvalidEvent
from receiver.identity.resolve import identity_policy
from receiver.ingest import plain
from receiver.ingest.parse import parse_events
from receiver.ingest.pipeline import (
    Begun,
    Outcome,
    Prepared,
    begin,
    invalid_result,
    prepare,
    store_body,
    with_client_ip,
)
from receiver.ingest.signature import FIRST_ELEMENT, how_presented, secret_refusal
from receiver.refusals import refuse_unusable_api_key
from receiver.rules.engine import store_of
from receiver.store import period_of, stored_hashes


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
    if not known_key(engine, api_key):
        raise Unauthorized()  # before the body is parsed: a made-up key costs one lookup
    seen.account_id = account_of(api_key)
    check_secret = partial(_check_secret, headers=headers, raw=raw)
    period_start, _ = period_of(now)
    try:
        prepared = parse(raw, now, settings, default_type)
        if client_ip is not None:
            prepared = with_client_ip(prepared, client_ip)
    except ReceiverError as problem:
        # A bad body from an unknown sender is answered 401: the key is checked first.
        run_transaction(
            engine, lambda session: _authenticate(session, api_key, check_secret, period_start)
        )
        raise problem from None
    seen.prepared = prepared
    if plain.applies(engine.dialect.name, prepared):
        lane = partial(
            plain.store_body,
            api_key=api_key,
            check_secret=check_secret,
            store_name=store_of(engine),
        )
        outcome = run_on_driver(engine, lambda c: lane(c, prepared=prepared, now=now))
        if outcome is not None:
            return outcome
    policy = identity_policy(settings)
    attempts = itertools.count(1)

    def general(session: Session) -> Outcome:
        first_attempt = next(attempts) == 1
        begun, signed = _authenticate(session, api_key, check_secret, period_start)
        sender = begun.sender
        scope = prepared
        if signed == FIRST_ELEMENT:
            scope = first_element_scope(session, sender.account_id, prepared, now)
        return store_body(session, begun, scope, now, policy, first_attempt)

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


def account_of(api_key: str | None) -> int | None:
    key = parse_credential(api_key, API_KEY_KIND) if api_key else None
    return key.account_id if key is not None else None


def _authenticate(
    session: Session,
    api_key: str | None,
    check_secret: Callable[[str | None, bool], str | None],
    period_start: date,
) -> tuple[Begun, str | None]:
    """The body's transaction begun for its key, and how the key's secret was shown."""
    begun = begin(session, api_key, period_start) if api_key else None
    if begun is None:
        raise Unauthorized()
    sender = begun.sender
    return begun, check_secret(sender.secret, sender.whole_body_signatures)


def _check_secret(
    secret: str | None, whole_body_only: bool, headers: Headers | Mapping[str, str], raw: bytes
) -> str | None:
    """How the request showed the key's secret (signature.how_presented), None for a key
    without one; Unauthorized when it did not, or only by a first-element signature to a key
    that takes none."""
    if secret is None:
        return None
    presented = how_presented(secret, headers, raw)
    if presented is None:
        raise Unauthorized(secret_refusal(headers))
    if presented == FIRST_ELEMENT and whole_body_only:
        raise Unauthorized(WHOLE_BODY_ONLY)
    return presented


WHOLE_BODY_ONLY = (
    "This API key takes signatures over the whole body only: sign the body, or send X-Api-Secret."
)
# Segment retries a delivery for up to four hours: a first element signed longer ago than
# this is no retry of Segment's.
SIGNED_FIRST_ELEMENT_MAX_AGE = timedelta(hours=6)


def first_element_scope(
    session: Session, account_id: int, prepared: Prepared, now: datetime
) -> Prepared:
    """What a signature over a batch's first element may authorise: the batch, unless that
    element is dated far from now, or was stored already while the batch brings new events
    (a signed body replayed at the head of forged ones; Segment's own redelivery of the
    batch brings none); and never a delete, which only a whole-body signature or
    X-Api-Secret carries out."""
    first = prepared.items[0]
    if isinstance(first, Draft):
        if abs(now - first.occurred_at) > SIGNED_FIRST_ELEMENT_MAX_AGE:
            raise Unauthorized(
                "The signed first element is dated too far from now to be a delivery of this "
                "batch: sign the whole body, or send X-Api-Secret."
            )
        hashes = [d.content_hash for d in prepared.drafts]
        stored = stored_hashes(session, account_id, hashes)
        if first.content_hash in stored and not stored.issuperset(hashes):
            raise Unauthorized(
                "The signed first element was stored already, and this batch brings new "
                "events: a signature covers the batch it came with only. Sign the whole "
                "body, or send X-Api-Secret."
            )
    return Prepared([_no_delete(item) for item in prepared.items])


def _no_delete(item: Draft | InvalidEvent) -> Draft | InvalidEvent:
    if isinstance(item, Draft) and item.source == "segment" and item.event_type == "delete":
        refused = InvalidEvent(
            "A delete is carried out only with a signature over the whole body or X-Api-Secret."
        )
        refused.message_id = item.message_id
        return refused
    return item
