"""The lead pages: find by email, the list, and one lead with its identifiers (each with an
unlink button), fields, scores and a timeline of its signals that pages by keyset."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import partial
from typing import Any

from flask import redirect, render_template, request, url_for
from marshmallow import ValidationError
from werkzeug.wrappers import Response as BaseResponse

from receiver.config import current_settings
from receiver.console.args import int_arg, notice
from receiver.console.auth import account_id
from receiver.console.blueprint import bp
from receiver.db import get_session, run_view_transaction
from receiver.errors import BadRequest, NotFound
from receiver.identity import lifecycle, profiles
from receiver.schemas import UnlinkSchema

PER_PAGE = 50
TIMELINE_PAGE = 50
UNLINK = UnlinkSchema()
LEAD_FIELDS = ("email", "name", "first_name", "last_name", "company", "title", "group_id")


@bp.route("/leads", methods=["GET"])
def leads_page() -> Any:
    session = get_session()
    email = request.args.get("email", "").strip()
    if email:
        lead_id = profiles.lead_id_for_email(session, account_id(), email)
        if lead_id is not None:
            return redirect(url_for("console.lead_page", lead_id=lead_id))
    order = request.args.get("order", "last_seen")
    order = order if order in profiles.ORDERS else "last_seen"
    page = int_arg("page", 1, 1, 100_000)
    window = current_settings().score_window_days
    listed = profiles.list_leads(session, account_id(), page, PER_PAGE, order, window)
    pages = max(1, math.ceil(listed["total"] / PER_PAGE))
    status = 404 if email else 200
    return (
        render_template(
            "leads.html", listed=listed, page=page, pages=pages, order=order, email=email
        ),
        status,
    )


@bp.route("/leads/<id:lead_id>", methods=["GET"])
def lead_page(lead_id: int) -> Any:
    before = _cursor(request.args.get("before", ""))
    window = current_settings().score_window_days
    lead = profiles.lead_detail(
        get_session(), account_id(), lead_id, TIMELINE_PAGE + 1, window, signals_before=before
    )
    if lead is None:
        raise NotFound("No such lead.")
    signals = lead["signals"][:TIMELINE_PAGE]
    older = None
    if len(lead["signals"]) > TIMELINE_PAGE:
        last = signals[-1]
        older = f"{_aware(last['occurred_at']).isoformat()}~{last['id']}"
    return render_template(
        "lead.html",
        lead=lead,
        fields=[(name, lead.get(name)) for name in LEAD_FIELDS if lead.get(name)],
        signals=signals,
        older=older,
        paged=before is not None,
        notice=notice(),
        moved=int_arg("moved", -1, 0, 10**12) if request.args.get("done") == "unlinked" else -1,
    )


@bp.route("/leads/<id:lead_id>/unlink", methods=["POST"])
def unlink(lead_id: int) -> BaseResponse:
    """The JSON API's unlink (CONTRACT section 6), in the same retried transaction."""
    try:
        args = UNLINK.load({"kind": request.form.get("kind"), "value": request.form.get("value")})
    except ValidationError as invalid:
        raise BadRequest(f"Not an identifier to unlink: {invalid.normalized_messages()}") from None
    work = partial(
        lifecycle.unlink,
        account_id=account_id(),
        lead_id=lead_id,
        kind=args["kind"],
        value=args["value"],
        now=datetime.now(UTC),
    )
    done = run_view_transaction(work)
    moved = done["signals_moved"]
    return redirect(url_for("console.lead_page", lead_id=lead_id, done="unlinked", moved=moved))


def _cursor(text: str) -> tuple[datetime, int] | None:
    """The (occurred_at, id) of the last signal a timeline page showed: the next one starts
    below it. A malformed cursor shows the newest page."""
    moment, _, signal_id = text.partition("~")
    if not (signal_id.isascii() and signal_id.isdigit()):
        return None
    try:
        return _aware(datetime.fromisoformat(moment)), int(signal_id)
    except ValueError:
        return None


def _aware(moment: datetime) -> datetime:
    # SQLite hands times back without their offset; they are UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
