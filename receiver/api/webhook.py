"""POST /webhook/<api_key>, and every other door Segment's senders use (CONTRACT section 2)."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from functools import partial
from typing import Any

from flask import Response, current_app, g, jsonify, request
from flask_smorest import Blueprint
from sqlmodel import Session

from receiver.accounts import Sender, find_sender
from receiver.config import current_settings
from receiver.db import engine_of, run_on_driver, run_transaction
from receiver.deliveries import account_of_key
from receiver.errors import BadRequest, OverLimit, PayloadTooLarge, ReceiverError, Unauthorized
from receiver.identity.resolve import identity_policy
from receiver.ingest import express
from receiver.ingest.parse import parse_events
from receiver.ingest.pipeline import (
    NeedsExclusive,
    Outcome,
    OverBudget,
    Prepared,
    invalid_result,
    prepare,
    store_all,
)
from receiver.ingest.segment import InvalidEvent
from receiver.ingest.signature import secret_presented
from receiver.ingest.store import period_of

log = logging.getLogger(__name__)
bp = Blueprint("webhook", __name__, description="Ingestion of Segment events (CONTRACT section 2).")

# Segment's Webhooks (Actions) destination lets users pick the method and follows no redirects.
METHODS = ["POST", "PUT", "PATCH"]
TRACKING_CALLS = {
    "batch": None,
    "track": "track",
    "identify": "identify",
    "page": "page",
    "screen": "screen",
    "group": "group",
    "alias": "alias",
}


_EVENT = {"type": "object", "description": "A Segment event, or any JSON object."}
EVENTS_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        _EVENT,
                        {"type": "array", "items": _EVENT},
                        {
                            "type": "object",
                            "properties": {"batch": {"type": "array", "items": _EVENT}},
                        },
                    ]
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": "Every event stored, held cold, or a duplicate: "
            "`{received, stored, duplicates, results}`."
        },
        "400": {"description": "Not JSON, no valid event."},
        "401": {"description": "Unknown or revoked key, or a missing secret."},
        "413": {"description": "Body over the limit."},
        "429": {"description": "The month's limit is reached (Retry-After)."},
        "503": {"description": "The store is unavailable (Retry-After)."},
    },
}


@bp.route("/webhook/<api_key>", methods=METHODS, strict_slashes=False)
@bp.route("/api/signal-staging/webhook/<api_key>", methods=METHODS, strict_slashes=False)
@bp.doc(**EVENTS_DOC)
def webhook(api_key: str) -> Response:
    return receive(api_key)


@bp.route("/webhook", methods=METHODS, strict_slashes=False)
@bp.route("/api/signal-staging/webhook", methods=METHODS, strict_slashes=False)
@bp.doc(**EVENTS_DOC, security=[{"apiKey": []}])
def webhook_basic_auth() -> Response:
    return receive(basic_auth_key())


@bp.post("/webhook/<api_key>/v1/<call>", strict_slashes=False)
@bp.doc(**EVENTS_DOC)
def tracking_api_with_key(api_key: str, call: str) -> Response:
    return receive(api_key, tracking_call(call))


@bp.post("/v1/<call>", strict_slashes=False)
@bp.doc(**EVENTS_DOC, security=[{"apiKey": []}])
def tracking_api(call: str) -> Response:
    return receive(basic_auth_key(), tracking_call(call))


def basic_auth_key() -> str | None:
    auth = request.authorization
    return auth.username if auth is not None and auth.type == "basic" else None


def tracking_call(call: str) -> str | None:
    if call not in TRACKING_CALLS:
        raise BadRequest(f"Unknown call /v1/{call}: use one of {', '.join(TRACKING_CALLS)}.")
    return TRACKING_CALLS[call]


def receive(api_key: str | None, default_type: str | None = None) -> Response:
    raw = request.get_data()  # read already, by the app's body-size check
    now = datetime.now(UTC)
    engine = engine_of(current_app)
    policy = identity_policy(current_settings())
    try:
        prepared, problem = parse(raw, now, default_type), None
    except ReceiverError as error:
        # A bad body from an unknown sender is answered 401, as the general path does.
        prepared, problem = None, error
    g.ingest_prepared = prepared

    def general(session: Session, exclusive: bool = False) -> Outcome:
        sender = authenticate(session, api_key, raw)
        if prepared is None:
            raise problem or AssertionError("neither events nor a problem")
        return store_all(session, sender, prepared, now, policy, exclusive)

    def express_lane(connection: Any) -> Outcome:
        assert prepared is not None
        check = partial(check_secret, raw=raw, api_key=api_key)
        return express.store_body(connection, api_key, check, prepared, now)

    try:
        try:
            if prepared is not None and express.applies(engine.dialect.name, prepared):
                outcome = run_on_driver(engine, express_lane)
            else:
                outcome = run_transaction(engine, general)
        except NeedsExclusive:
            outcome = run_transaction(engine, partial(general, exclusive=True))
    except OverBudget as over:
        outcome = run_transaction(engine, over.store_what_fits)
    g.ingest_outcome = outcome
    # The access log has a line per request already: this one is worth its cost (about 50 us,
    # a twentieth of a plain event's time in the worker) only when a body was not all stored.
    log.log(
        logging.INFO if outcome.stored < len(outcome.results) else logging.DEBUG,
        "received=%d stored=%d duplicates=%d rejected=%d",
        len(outcome.results),
        outcome.stored,
        outcome.duplicates,
        outcome.rejected,
    )
    if outcome.rejected:
        raise OverLimit(
            "This account's raw-signal limit for the month is reached; events past "
            "it were not stored. Upgrade the plan, or they are retried later.",
            headers={"Retry-After": str(seconds_to_next_period(now))},
            **outcome.body(),
        )
    return jsonify(outcome.body())


def authenticate(session: Session, api_key: str | None, raw: bytes) -> Sender:
    sender = find_sender(session, api_key) if api_key else None
    if sender is None:
        raise Unauthorized()
    check_secret(sender.secret, raw, api_key)
    return sender


def check_secret(secret: str | None, raw: bytes, api_key: str | None = None) -> None:
    g.delivery_account_id = account_of_key(api_key)  # a known key: the delivery log keeps it
    if secret is not None and not secret_presented(secret, request.headers, raw):
        raise Unauthorized(
            "This API key needs its secret: send X-Api-Secret, or an "
            "X-Signature HMAC-SHA1 of the body keyed with the secret."
        )


def parse(raw: bytes, now: datetime, default_type: str | None) -> Prepared:
    events, _ = parse_events(raw)
    settings = current_settings()
    if len(events) > settings.max_batch_events:
        raise PayloadTooLarge(
            f"More than {settings.max_batch_events} events in one body: send smaller batches."
        )
    prepared = prepare(events, now, settings.max_event_bytes, default_type)
    if not prepared.drafts:
        results = [invalid_result(i) for i in prepared.items if isinstance(i, InvalidEvent)]
        raise BadRequest(f"No valid event in this body: {results[0]['message']}", results=results)
    return prepared


def seconds_to_next_period(now: datetime) -> int:
    _, next_start = period_of(now)
    return max(1, math.ceil((next_start - now).total_seconds()))
