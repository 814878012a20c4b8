"""/admin/leads: a lead with its identities, fields and signals."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from receiver.api.admin_auth import account_id, require_admin
from receiver.api.json_body import require_json_body
from receiver.api.schemas import LeadArgsSchema, LeadDetailArgsSchema, LeadListSchema, LeadSchema
from receiver.config import current_settings
from receiver.db import get_session
from receiver.errors import NotFound
from receiver.identity import profiles

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
