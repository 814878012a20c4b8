"""The deliveries page: the account's recent ingestion requests and, per event, what was
answered; filterable by the answer's status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import render_template, request

from receiver import deliveries
from receiver.config import current_settings
from receiver.console.args import int_arg
from receiver.console.auth import account_id
from receiver.console.blueprint import bp
from receiver.db import get_session

SHOWN = 200
CLASSES = {"2xx": (200, 300), "4xx": (400, 500), "5xx": (500, 600)}
# What ingestion answers per event (ingest/pipeline.py).
RESULTS = ("stored", "cold", "duplicate", "deleted", "rejected", "invalid")


@bp.route("/deliveries", methods=["GET"])
def deliveries_page() -> Any:
    chosen = request.args.get("status", "")
    statuses = CLASSES.get(chosen)
    code = int_arg("status", 0, 100, 599)
    if statuses is None and code:
        statuses = (code, code + 1)
    result = request.args.get("result", "")
    result = result if result in RESULTS else ""
    settings = current_settings()
    since = datetime.now(UTC) - timedelta(hours=settings.delivery_log_hours)
    # The log keeps at most delivery_log_per_account requests of an account: all of them may
    # be read to find those with an event answered `result`.
    limit = settings.delivery_log_per_account if result else SHOWN
    rows: list[Any] = deliveries.recent(get_session(), account_id(), since, limit, statuses)
    if result:
        rows = [_only(row, result) for row in rows if _answered(row, result)][:SHOWN]
    return render_template(
        "deliveries.html",
        rows=rows,
        chosen=chosen if statuses else "",
        result=result,
        classes=CLASSES,
        results=RESULTS,
        shown=SHOWN,
        hours=settings.delivery_log_hours,
    )


def _answered(row: Any, result: str) -> bool:
    return any(r.get("status") == result for r in row["results"] or ())


def _only(row: Any, result: str) -> dict[str, Any]:
    """The request with only its events answered `result`."""
    return {**row, "results": [r for r in row["results"] if r.get("status") == result]}
