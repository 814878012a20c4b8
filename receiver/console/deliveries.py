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


@bp.route("/deliveries", methods=["GET"])
def deliveries_page() -> Any:
    chosen = request.args.get("status", "")
    statuses = CLASSES.get(chosen)
    code = int_arg("status", 0, 100, 599)
    if statuses is None and code:
        statuses = (code, code + 1)
    hours = current_settings().delivery_log_hours
    since = datetime.now(UTC) - timedelta(hours=hours)
    rows = deliveries.recent(get_session(), account_id(), since, SHOWN, statuses)
    return render_template(
        "deliveries.html",
        rows=rows,
        chosen=chosen if statuses else "",
        classes=CLASSES,
        shown=SHOWN,
        hours=hours,
    )
