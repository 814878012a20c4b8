"""/admin/leads: a lead with its identities, fields and signals."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

from flask import Response
from flask_smorest import Blueprint

from receiver.api.admin_auth import account_id, require_admin
from receiver.api.json_body import require_json_body
from receiver.config import current_settings
from receiver.db import get_session, run_view_transaction
from receiver.errors import NotFound
from receiver.identity import lifecycle, profiles
from receiver.schemas import (
    LeadArgsSchema,
    LeadDetailArgsSchema,
    LeadListSchema,
    LeadSchema,
    MergeSchema,
    UnlinkedAnswerSchema,
    UnlinkSchema,
)

blp = Blueprint(
    "leads", __name__, url_prefix="/admin/leads", description="Leads and their history."
)
blp.before_request(require_admin)
blp.before_request(require_json_body)
LEAD, LEAD_LIST = LeadSchema(), LeadListSchema()


@blp.route("", methods=["GET"], strict_slashes=False)
@blp.arguments(LeadArgsSchema, location="query")
@blp.doc(
    responses={
        "200": {
            "description": "With `email`: a Lead; without: a LeadList.",
            "content": {"application/json": {"schema": {"oneOf": [LeadSchema, LeadListSchema]}}},
        }
    }
)
def find_leads(args: dict[str, Any]) -> dict[str, Any]:
    """With `email`: that lead (404 if none). Without: leads, most recently seen first, or
    with `order=score` by score_recent, highest first."""
    session = get_session()
    if "email" in args:
        lead_id = profiles.lead_id_for_email(session, account_id(), args["email"])
        return LEAD.dump(_lead(lead_id, signals_limit=100))
    window = current_settings().score_window_days
    return LEAD_LIST.dump(
        profiles.list_leads(
            session, account_id(), args["page"], args["per_page"], args["order"], window
        )
    )


@blp.route("/<id:lead_id>", methods=["GET"])
@blp.arguments(LeadDetailArgsSchema, location="query")
@blp.response(200, LeadSchema)
def get_lead(args: dict[str, Any], lead_id: int) -> dict[str, Any]:
    """The lead with its identities and its signals, newest first."""
    return _lead(lead_id, args["signals_limit"])


def _lead(lead_id: int | None, signals_limit: int) -> dict[str, Any]:
    window = current_settings().score_window_days
    lead = profiles.lead_detail(get_session(), account_id(), lead_id, signals_limit, window)
    if lead is None:
        raise NotFound("No such lead.")
    return lead


@blp.route("/<id:lead_id>/unlink", methods=["POST"])
@blp.arguments(UnlinkSchema)
@blp.response(200, UnlinkedAnswerSchema)
def unlink(data: dict[str, Any], lead_id: int) -> dict[str, Any]:
    """Detach an identifier from the lead (CONTRACT section 6): the signals only it tied to
    the lead go back to cold storage under it, and it never joins the lead again."""
    work = partial(
        lifecycle.unlink,
        account_id=account_id(),
        lead_id=lead_id,
        kind=data["kind"],
        value=data["value"],
        now=datetime.now(UTC),
    )
    return run_view_transaction(work)


@blp.route("/merge", methods=["POST"])
@blp.arguments(MergeSchema)
@blp.response(200, LeadSchema)
def merge(data: dict[str, Any]) -> dict[str, Any]:
    """Merge lead `from` into lead `into`: identifiers, signals, traits and its email; `from`
    is deleted."""
    work = partial(
        lifecycle.merge,
        account_id=account_id(),
        from_id=data["from_"],
        into_id=data["into"],
        now=datetime.now(UTC),
    )
    return _lead(run_view_transaction(work), signals_limit=100)


@blp.route("/<id:lead_id>", methods=["DELETE"])
@blp.response(204)
def delete_lead(lead_id: int) -> Response:
    """Delete the lead, its identifiers and every signal of theirs, as Segment's `delete`."""
    work = partial(lifecycle.delete, account_id=account_id(), lead_id=lead_id)
    run_view_transaction(work)
    return Response(status=204)
