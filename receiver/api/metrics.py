"""GET /metrics (CONTRACT section 8), and the hooks that count every request and event."""

from __future__ import annotations

import functools
import hmac
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from receiver import metrics
from receiver.errors import Unauthorized

bp = Blueprint("metrics", __name__)
UNMATCHED = "unmatched"  # the route label of a path no route serves (a 404, a scan)


@bp.get("/metrics")
def read_metrics() -> Response:
    token = current_app.extensions["receiver.settings"].metrics_token
    if token:
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            sent.strip().encode(), token.encode()
        ):
            raise Unauthorized("Send Authorization: Bearer <METRICS_TOKEN>.")
    return Response(metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.get("metrics_started")
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    requests, duration = _children(route, response.status_code)
    requests.inc()
    if started is not None:
        duration.observe(time.perf_counter() - started)
    outcome = g.get("ingest_outcome")
    prepared = g.get("ingest_prepared")
    if outcome is not None:
        metrics.count_events(outcome.results)
    elif prepared is not None and response.status_code == 400:
        # Parsed, and answered 400: every event of the body was invalid.
        metrics.EVENTS.labels("invalid").inc(len(prepared.items))
    return response


@functools.cache
def _children(route: str, status: int) -> tuple[Any, Any]:
    """The labelled series of a route and status, looked up once: labels() takes a lock and
    builds a key each time, a third of these hooks' cost before (about 10 us a request)."""
    return (
        metrics.HTTP_REQUESTS.labels(route, str(status)),
        metrics.HTTP_DURATION.labels(route),
    )


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(_start)
    app.after_request(_observe)
