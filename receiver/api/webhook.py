"""POST /webhook/<api_key>, and every other door Segment's senders use (docs/reference.md,
"Ingestion")."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

from flask import Response, current_app, g, jsonify, request
from flask_smorest import Blueprint

from receiver.accounts import known_key
from receiver.api.cors import admit
from receiver.config import current_settings
from receiver.db import engine_of
from receiver.errors import BadRequest, OverLimit, Unauthorized
from receiver.ingest.receive import Seen
from receiver.ingest.receive import receive as ingest
from receiver.refusals import refuse_unusable_api_key
from receiver.store import period_of

log = logging.getLogger(__name__)
bp = Blueprint("webhook", __name__, description="Ingestion of Segment events.")

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
            "description": "Every event stored, held cold, a duplicate, or invalid (the rest "
            "of the body stored): `{received, stored, duplicates, results}`, a result per "
            "event (`status`: stored, cold, duplicate, invalid with a `message`, or deleted; "
            "a generic signal whose `type` is none of Segment's has a `note`). A body with "
            "deletions (Segment's `delete`, carried out, nothing stored) also has `deleted`: "
            "received = stored + duplicates + deleted + the invalid ones."
        },
        "400": {"description": "Not JSON, no valid event."},
        "401": {
            "description": "No key, an admin token in its place, an unknown or revoked key, "
            "or a missing or wrong secret: the message says which."
        },
        "413": {"description": "Body over the limit (the message states it)."},
        "415": {"description": "A Content-Encoding other than gzip."},
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
    return receive(basic_auth_key() or request.headers.get("X-Api-Key"))


@bp.post("/webhook/<api_key>/v1/<call>", strict_slashes=False)
@bp.doc(**EVENTS_DOC)
def tracking_api_with_key(api_key: str, call: str) -> Response:
    return receive(api_key, tracking_call(call, api_key))


def basic_auth_key() -> str | None:
    auth = request.authorization
    return auth.username if auth is not None and auth.type == "basic" else None


def tracking_call(call: str, api_key: str | None) -> str | None:
    """The event type a tracking API call implies. An unknown call is a 400, but only to a
    sender whose key is known: whoever else asks learns nothing but 401."""
    if call not in TRACKING_CALLS:
        refuse_unusable_api_key(api_key)
        if not known_key(engine_of(current_app), api_key):
            raise Unauthorized()
        raise BadRequest(f"Unknown call /v1/{call}: use one of {', '.join(TRACKING_CALLS)}.")
    return TRACKING_CALLS[call]


def receive(
    api_key: str | None, default_type: str | None = None, *, client_ip: str | None = None
) -> Response:
    """client_ip: the address to put in each event's context.ip where it has none."""
    admit(api_key)
    now = datetime.now(UTC)
    raw = request.get_data()  # read already, by the app's body-size check
    seen = Seen()
    try:
        outcome = ingest(
            engine_of(current_app),
            current_settings(),
            api_key,
            raw,
            request.headers,
            now,
            default_type,
            client_ip,
            seen=seen,
        )
    finally:
        # What the delivery log and the metrics (after_request hooks) read, refused or not.
        g.delivery_account_id = seen.account_id
        g.ingest_prepared = seen.prepared
    g.ingest_outcome = outcome
    # The access log has a line per request already: this one is worth its cost (about 50 us,
    # a twentieth of a plain event's time in the worker) only when a body was not all stored.
    log.log(
        logging.INFO if outcome.stored < len(outcome.results) else logging.DEBUG,
        "received=%d stored=%d duplicates=%d invalid=%d rejected=%d deleted=%d",
        len(outcome.results),
        outcome.stored,
        outcome.duplicates,
        outcome.invalid,
        outcome.rejected,
        outcome.deleted,
    )
    if outcome.rejected:
        raise OverLimit(
            "This account's raw-signal limit for the month is reached; events past "
            "it were not stored. Upgrade the plan, or they are retried later.",
            headers={"Retry-After": str(seconds_to_next_period(now))},
            **outcome.body(),
        )
    return jsonify(outcome.body())


def seconds_to_next_period(now: datetime) -> int:
    _, next_start = period_of(now)
    return max(1, math.ceil((next_start - now).total_seconds()))
