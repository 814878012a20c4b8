"""The usage and keys page: the month's usage against the plan's limit, the account's API
keys, a new key (shown once, on the page that answers its creation) and revocation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import redirect, render_template, request, url_for
from marshmallow import ValidationError
from werkzeug.wrappers import Response as BaseResponse

from receiver import keys
from receiver.browser import BROWSER
from receiver.console.args import notice
from receiver.console.auth import account_id
from receiver.console.blueprint import bp
from receiver.db import get_session
from receiver.errors import NotFound
from receiver.schemas import NewKeyArgsSchema

NEW_KEY = NewKeyArgsSchema()


@bp.route("/account", methods=["GET"])
def account_page() -> Any:
    return _page()


@bp.route("/keys", methods=["POST"])
def create_key() -> Any:
    form = request.form
    kind = form.get("kind", "server")
    origins = [o.strip() for o in form.get("allowed_origins", "").split() if o.strip()]
    raw = {
        "kind": kind,
        "secret": form.get("secret") or None,
        "allowed_origins": origins if kind == BROWSER else None,
        "whole_body_signatures": form.get("whole_body_signatures") == "on",
    }
    try:
        args = NEW_KEY.load(raw)
    except ValidationError as invalid:
        return _page(errors=invalid.normalized_messages(), status=422)
    session = get_session()
    created = keys.new_key(
        session,
        account_id(),
        datetime.now(UTC),
        args["secret"],
        args["allowed_origins"] if args["kind"] == BROWSER else None,
        whole_body_signatures=args["whole_body_signatures"],
    )
    session.commit()
    return _page(created=created, status=201)


@bp.route("/keys/<id:key_id>/revoke", methods=["POST"])
def revoke_key(key_id: int) -> BaseResponse:
    session = get_session()
    if not keys.revoke_key(session, account_id(), key_id, datetime.now(UTC)):
        raise NotFound("No such key.")
    session.commit()
    return redirect(url_for("console.account_page", done="revoked"))


def _page(
    created: dict[str, Any] | None = None,
    errors: dict[str, Any] | None = None,
    status: int = 200,
) -> Any:
    session = get_session()
    used = keys.usage(session, account_id(), datetime.now(UTC))
    return (
        render_template(
            "account.html",
            usage=used,
            keys=keys.list_keys(session, account_id()),
            created=created,
            errors=errors or {},
            notice=notice(),
        ),
        status,
    )
