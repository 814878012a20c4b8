"""/admin/queue: the Signal Queue."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from receiver.api.admin_auth import account_id, require_admin
from receiver.api.json_body import require_json_body
from receiver.db import get_session
from receiver.rules import queue
from receiver.schemas import PageArgsSchema, QueueSchema

blp = Blueprint(
    "queue",
    __name__,
    url_prefix="/admin/queue",
    description="Unmapped signals grouped by source, event type and event name.",
)
blp.before_request(require_admin)
blp.before_request(require_json_body)


@blp.route("", methods=["GET"], strict_slashes=False)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, QueueSchema)
def list_queue(args: dict[str, Any]) -> dict[str, Any]:
    """Groups by count, each with a sample payload and a rule suggested from it."""
    page, per_page = args["page"], args["per_page"]
    total, groups = queue.list_groups(get_session(), account_id(), per_page, (page - 1) * per_page)
    return {"total": total, "page": page, "per_page": per_page, "groups": groups}
