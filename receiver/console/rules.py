"""The rule pages: the list, the editor with its live preview, enable or disable, delete,
backfill progress, versions with their diffs, and revert. Every change is the rules
service's, committed here as the JSON API's views commit theirs."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from receiver import exact_json
from receiver.config import current_settings
from receiver.console import payload_tree, rule_diff, rule_form
from receiver.console.args import notice
from receiver.console.auth import account_id
from receiver.console.blueprint import bp
from receiver.console.queue import SAMPLE_WINDOW, group_key
from receiver.db import get_session
from receiver.errors import NotFound, Unprocessable
from receiver.events import InvalidEvent
from receiver.ingest.preview import estimate, try_rule
from receiver.models import Rule
from receiver.rules import queue, samples, service, worker
from receiver.rules.engine import compile_rule

_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@bp.route("/rules", methods=["GET"])
def rules_page() -> Any:
    rules = service.list_rules(get_session(), account_id())
    return render_template("rules.html", rules=rules, notice=notice())


@bp.route("/rules/new", methods=["GET"])
def new_rule_page() -> Any:
    """An editor pre-filled from a queue group (its suggested rule), with the paths picked on
    the group's page added as `exists` conditions and as fields."""
    key = group_key()
    group = queue.get_group(get_session(), account_id(), *key) if key[0] else None
    rule: dict[str, Any] = dict(group["suggested_rule"]) if group else {"enabled": True}
    picked = [{"field": path, "op": "exists"} for path in request.args.getlist("condition")]
    rule["conditions"] = [*rule.get("conditions", []), *picked]
    fields = dict(rule.get("fields") or {})
    for path in request.args.getlist("field"):
        if path not in fields.values():
            fields[_field_name(path, fields)] = path
    rule["fields"] = fields
    sample = group["sample"] if group else ""
    return _editor(None, rule_form.draft_of(rule), sample)


@bp.route("/rules/new", methods=["POST"])
def create_rule() -> Any:
    raw = rule_form.rule_from_form(request.form)
    data, errors = rule_form.load(raw)
    if data is None:
        return _editor(None, rule_form.draft_of(raw, errors), _sample_text(), status=422)
    session = get_session()
    caps = service.RuleCaps.of(current_settings())
    try:
        rule = service.create_rule(session, account_id(), data, datetime.now(UTC), caps)
    except Unprocessable as refused:
        session.rollback()
        draft = rule_form.draft_of(raw, refused.extra.get("errors") or {"_schema": [str(refused)]})
        return _editor(None, draft, _sample_text(), status=422)
    session.commit()
    if rule.enabled:
        worker.wake(current_app)
    return redirect(url_for("console.rule_page", rule_id=rule.id, done="created"))


@bp.route("/rules/<id:rule_id>", methods=["GET"])
def rule_page(rule_id: int) -> Any:
    rule = _owned_rule(rule_id)
    return _editor(rule, rule_form.draft_of(_definition(rule)), _sample_of(rule))


@bp.route("/rules/<id:rule_id>", methods=["POST"])
def save_rule(rule_id: int) -> Any:
    rule = _owned_rule(rule_id)
    raw = rule_form.rule_from_form(request.form)
    data, errors = rule_form.load(raw)
    if data is None:
        return _editor(rule, rule_form.draft_of(raw, errors), _sample_text(), status=422)
    caps = service.RuleCaps.of(current_settings())
    try:
        rematch = service.update_rule(get_session(), rule, data, datetime.now(UTC), caps)
    except Unprocessable as refused:
        get_session().rollback()
        draft = rule_form.draft_of(raw, refused.extra.get("errors") or {"_schema": [str(refused)]})
        return _editor(_owned_rule(rule_id), draft, _sample_text(), status=422)
    return _changed(rule_id, rematch, "saved")


@bp.route("/rules/preview", methods=["POST"])
def preview_rule() -> Any:
    """The editor as submitted, with what the rule would do to the sample and to the queued
    signals; nothing is stored. The page's script asks for it as the form changes."""
    raw = rule_form.rule_from_form(request.form)
    data, errors = rule_form.load(raw)
    rule_id = _number(request.form.get("rule_id", ""))
    rule = _owned_rule(rule_id) if rule_id is not None else None
    draft = rule_form.draft_of(raw, errors)
    sample_text = _sample_text()
    result, problem = None, None
    if data is not None and not sample_text.strip():
        result = {"queue": estimate(get_session(), account_id(), compile_rule(data))}
    elif data is not None:
        try:
            sample = exact_json.loads(sample_text)
            result = try_rule(
                get_session(),
                account_id(),
                data,
                sample,
                datetime.now(UTC),
                current_settings().max_event_bytes,
            )
        except orjson.JSONDecodeError as invalid:
            problem = f"The sample is not JSON: {invalid}"
        except InvalidEvent as invalid:
            problem = f"The sample is not an event this receiver stores: {invalid}"
    return _editor(rule, draft, sample_text, preview=result, problem=problem)


@bp.route("/rules/<id:rule_id>/enabled", methods=["POST"])
def set_enabled(rule_id: int) -> BaseResponse:
    rule = _owned_rule(rule_id)
    enabled = request.form.get("enabled") == "on"
    caps = service.RuleCaps.of(current_settings())
    rematch = service.update_rule(
        get_session(), rule, {"enabled": enabled}, datetime.now(UTC), caps
    )
    return _changed(rule_id, rematch, "enabled" if enabled else "disabled")


@bp.route("/rules/<id:rule_id>/delete", methods=["POST"])
def delete_rule(rule_id: int) -> BaseResponse:
    session = get_session()
    service.delete_rule(session, _owned_rule(rule_id))
    session.commit()
    return redirect(url_for("console.rules_page", done="deleted"))


@bp.route("/rules/<id:rule_id>/revert", methods=["POST"])
def revert_rule(rule_id: int) -> BaseResponse:
    session = get_session()
    rule = _owned_rule(rule_id)
    number = request.form.get("version", "")
    version = service.get_version(session, rule, n) if (n := _number(number)) else None
    if version is None:
        raise NotFound(f"Rule {rule_id} has no version {number}.")
    before = rule.version
    caps = service.RuleCaps.of(current_settings())
    rematch = service.revert_rule(session, rule, version, datetime.now(UTC), caps)
    return _changed(rule_id, rematch, "reverted" if rule.version != before else "unchanged")


@bp.route("/rules/<id:rule_id>/backfill/cancel", methods=["POST"])
def cancel_backfill(rule_id: int) -> BaseResponse:
    session = get_session()
    service.cancel_backfill(session, _owned_rule(rule_id), datetime.now(UTC))
    session.commit()
    return redirect(url_for("console.rule_page", rule_id=rule_id, done="cancelled"))


@bp.route("/rules/<id:rule_id>/backfill", methods=["GET"])
def backfill_progress(rule_id: int) -> Any:
    """The backfill's progress alone, for the rule page's script to refresh while it runs."""
    return render_template("_backfill.html", rule=_owned_rule(rule_id))


def _editor(
    rule: Rule | None,
    draft: rule_form.Draft,
    sample: Any,
    status: int = 200,
    preview: dict[str, Any] | None = None,
    problem: str | None = None,
) -> Any:
    sample_text = sample if isinstance(sample, str) else _pretty(sample)
    try:
        nodes = payload_tree.tree(exact_json.loads(sample_text or "{}"))
    except orjson.JSONDecodeError:
        nodes = []
    session = get_session()
    versions = service.list_versions(session, rule) if rule is not None else []
    diffs = [
        (version, rule_diff.changes(versions[i - 1] if i else None, version))
        for i, version in enumerate(versions)
    ]
    page = render_template(
        "rule_edit.html",
        rule=rule,
        draft=draft,
        sample_text=sample_text,
        nodes=nodes,
        preview=preview,
        problem=problem,
        versions=list(reversed(diffs)),
        operators=rule_form.OPERATOR_NAMES,
        event_types=rule_form.EVENT_TYPES,
        sources=rule_form.SOURCES,
        notice=notice(),
    )
    return page, status


def _changed(rule_id: int, rematch: bool, done: str) -> BaseResponse:
    get_session().commit()
    if rematch:
        worker.wake(current_app)
    return redirect(url_for("console.rule_page", rule_id=rule_id, done=done))


def _owned_rule(rule_id: int) -> Rule:
    rule = service.get_rule(get_session(), account_id(), rule_id)
    if rule is None:
        raise NotFound("No such rule.")
    return rule


def _definition(rule: Rule) -> dict[str, Any]:
    return {name: getattr(rule, name) for name in service.DEFINITION}


def _sample_of(rule: Rule) -> Any:
    """An event to try the rule on: the newest it mapped, else the sample of the queue group
    it names, else none."""
    assert rule.id is not None
    session = get_session()
    mapped = samples.newest_mapped(session, account_id(), rule.id, SAMPLE_WINDOW)
    if mapped is not None:
        return mapped
    if rule.source is None:
        return ""
    group = queue.get_group(session, account_id(), rule.source, rule.event_type, rule.event_name)
    return group["sample"] if group else ""


def _sample_text() -> str:
    return request.form.get("sample", "")


def _pretty(value: Any) -> str:
    return exact_json.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _number(text: str) -> int | None:
    """A row id or version number from a form: digits, and few enough for the store's ints."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def _field_name(path: str, taken: dict[str, str]) -> str:
    """A lead field's name for a picked path: its last key, when that can be a name."""
    last = path.rsplit(".", 1)[-1]
    name = last if _FIELD_NAME.match(last) else "field"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    return candidate
