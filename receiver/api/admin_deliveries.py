"""/admin/deliveries: the account's recent ingestion requests, as answered (CONTRACT section 3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask_smorest import Blueprint
from marshmallow import fields as f
from marshmallow.validate import Range

from receiver import deliveries
from receiver.api.admin_auth import account_id, require_admin
from receiver.config import current_settings
from receiver.db import get_session
from receiver.schemas import Schema, UtcDateTime

blp = Blueprint(
    "deliveries",
    __name__,
    url_prefix="/admin/deliveries",
    description="Recent ingestion requests: what was answered, and why, per event.",
)
blp.before_request(require_admin)
DEFAULT_LIMIT = 500


class DeliveryArgsSchema(Schema):
    limit = f.Integer(load_default=DEFAULT_LIMIT, validate=Range(1, 10_000))


class DeliveryResultSchema(Schema):
    status = f.String()
    messageId = f.String(allow_none=True)
    type = f.String(allow_none=True)
    event = f.String(allow_none=True)
    message = f.String(allow_none=True)


class DeliverySchema(Schema):
    id = f.Integer()
    received_at = UtcDateTime()
    method = f.String()
    path = f.String()
    status = f.Integer()
    received = f.Integer()
    stored = f.Integer()
    duplicates = f.Integer()
    message = f.String(allow_none=True)
    request_id = f.String(allow_none=True)
    results = f.List(f.Nested(DeliveryResultSchema))


class DeliveriesSchema(Schema):
    deliveries = f.List(f.Nested(DeliverySchema))


@blp.route("", methods=["GET"], strict_slashes=False)
@blp.arguments(DeliveryArgsSchema, location="query")
@blp.response(200, DeliveriesSchema)
def list_deliveries(args: dict[str, Any]) -> dict[str, Any]:
    """Newest first, of the last DELIVERY_LOG_HOURS (24 unless set)."""
    since = datetime.now(UTC) - timedelta(hours=current_settings().delivery_log_hours)
    rows = deliveries.recent(get_session(), account_id(), since, args["limit"])
    return {"deliveries": rows}
