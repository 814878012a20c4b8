"""/admin/rules: mapping rules, their versions, their preview and their backfill."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Response, current_app
from flask_smorest import Blueprint

from receiver.api.admin_auth import account_id, require_admin
from receiver.api.json_body import require_json_body
from receiver.config import current_settings
from receiver.db import get_session
from receiver.errors import BadRequest, NotFound
from receiver.events import InvalidEvent
from receiver.ingest.preview import try_rule
from receiver.models import Rule, RuleVersion
from receiver.rules import service, worker
from receiver.schemas import (
    PreviewResultSchema,
    PreviewSchema,
    RevertSchema,
    RuleSchema,
    RuleVersionSchema,
)

blp = Blueprint(
    "rules",
    __name__,
    url_prefix="/admin/rules",
    description="Mapping rules: turn queued events into named, scored signals.",
)
blp.before_request(require_admin)
blp.before_request(require_json_body)


@blp.route("", methods=["GET"], strict_slashes=False)
@blp.response(200, RuleSchema(many=True))
def list_rules() -> list[Rule]:
    return service.list_rules(get_session(), account_id())


@blp.route("", methods=["POST"], strict_slashes=False)
@blp.arguments(RuleSchema)
@blp.response(201, RuleSchema)
def create_rule(data: dict[str, Any]) -> Rule:
    session = get_session()
    caps = service.RuleCaps.of(current_settings())
    rule = service.create_rule(session, account_id(), data, datetime.now(UTC), caps)
    session.commit()
    if rule.enabled:
        worker.wake(current_app)
    return rule


@blp.route("/<id:rule_id>", methods=["GET"])
@blp.response(200, RuleSchema)
def get_rule(rule_id: int) -> Rule:
    """The rule with its backfill's progress; reading it starts nothing."""
    return _owned_rule(rule_id)


@blp.route("/<id:rule_id>", methods=["PUT"])
@blp.arguments(RuleSchema)
@blp.response(200, RuleSchema)
def replace_rule(data: dict[str, Any], rule_id: int) -> Rule:
    return _update(rule_id, data)


@blp.route("/<id:rule_id>", methods=["PATCH"])
@blp.arguments(RuleSchema(partial=True))
@blp.response(200, RuleSchema)
def change_rule(data: dict[str, Any], rule_id: int) -> Rule:
    return _update(rule_id, data)


@blp.route("/<id:rule_id>", methods=["DELETE"])
@blp.response(204)
def delete_rule(rule_id: int) -> Response:
    session = get_session()
    service.delete_rule(session, _owned_rule(rule_id))
    session.commit()
    return Response(status=204)


@blp.route("/<id:rule_id>/versions", methods=["GET"])
@blp.response(200, RuleVersionSchema(many=True))
def list_versions(rule_id: int) -> list[RuleVersion]:
    """Every definition the rule has had, oldest first, the current one last."""
    return service.list_versions(get_session(), _owned_rule(rule_id))


@blp.route("/<id:rule_id>/revert", methods=["POST"])
@blp.arguments(RevertSchema)
@blp.response(200, RuleSchema)
def revert_rule(data: dict[str, Any], rule_id: int) -> Rule:
    """Make version n the current definition again, as a new version (none if it is the
    current one already), with a change's effects: a backfill when what it matches changes."""
    session = get_session()
    rule = _owned_rule(rule_id)
    version = service.get_version(session, rule, data["version"])
    if version is None:
        raise NotFound(
            f"Rule {rule_id} has no version {data['version']}; "
            f"GET /admin/rules/{rule_id}/versions lists them."
        )
    caps = service.RuleCaps.of(current_settings())
    return _changed(rule, service.revert_rule(session, rule, version, datetime.now(UTC), caps))


@blp.route("/<id:rule_id>/backfill/cancel", methods=["POST"])
@blp.response(200, RuleSchema)
def cancel_backfill(rule_id: int) -> Rule:
    """Stop the rule's backfill (pending or running) where it is: what it mapped stays
    mapped. A later change of what the rule matches starts a new one."""
    session = get_session()
    rule = _owned_rule(rule_id)
    service.cancel_backfill(session, rule, datetime.now(UTC))
    session.commit()
    return rule


@blp.route("/preview", methods=["POST"])
@blp.arguments(PreviewSchema)
@blp.response(200, PreviewResultSchema)
def preview(data: dict[str, Any]) -> dict[str, Any]:
    """Whether the rule matches the payload and what it extracts; and what it would map among
    the queued signals. Nothing is stored."""
    try:
        return try_rule(
            get_session(),
            account_id(),
            data["rule"],
            data["payload"],
            datetime.now(UTC),
            current_settings().max_event_bytes,
        )
    except InvalidEvent as invalid:
        raise BadRequest(
            f"The payload is not an event this receiver stores: {invalid}",
            errors={"payload": [str(invalid)]},
        ) from None


def _update(rule_id: int, data: dict[str, Any]) -> Rule:
    rule = _owned_rule(rule_id)
    caps = service.RuleCaps.of(current_settings())
    rematch = service.update_rule(get_session(), rule, data, datetime.now(UTC), caps)
    return _changed(rule, rematch)


def _changed(rule: Rule, rematch: bool) -> Rule:
    get_session().commit()
    if rematch:
        worker.wake(current_app)
    return rule


def _owned_rule(rule_id: int) -> Rule:
    rule = service.get_rule(get_session(), account_id(), rule_id)
    if rule is None:
        raise NotFound("No such rule.")
    return rule
