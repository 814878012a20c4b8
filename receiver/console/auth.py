"""Signing in to the console and guarding its changes: the session cookie, the CSRF token
every form carries, and the Origin every change comes from."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Response, current_app, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from receiver.browser import ClientRateLimit, normal_origin
from receiver.config import current_settings
from receiver.console import sessions
from receiver.console.blueprint import bp
from receiver.db import get_session

COOKIE = "receiver_console"
# Per client address and worker: enough for an admin who mistypes, too few to guess a token.
SIGN_IN_LIMIT = "20/minute"
OPEN_ENDPOINTS = frozenset({"console.sign_in", "console.static"})
WRONG_TOKEN = (
    "That is not a live admin token of any account. Admin tokens read ra_<account>_<random>: "
    "the one create-account printed, or one made with POST /admin/tokens."
)


class Refused(Exception):
    """A change that did not show it came from the console's own page: nothing was done."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def account_id() -> int:
    return int(g.console.account_id)


def require_session() -> BaseResponse | None:
    """before_request: g.console for a live session; else to the sign-in page, and a change
    refused (CSRF) before anything reads its form."""
    if request.endpoint in OPEN_ENDPOINTS:
        _check_origin()
        return None
    signed = sessions.find(get_session(), request.cookies.get(COOKIE, ""), datetime.now(UTC))
    if signed is None:
        if request.endpoint == "console.sign_out":
            return redirect(url_for("console.sign_in"))  # already ended: nothing to refuse
        if request.method == "POST":
            raise Refused(403, "Your console session has ended: sign in again.")
        return redirect(url_for("console.sign_in", next=request.full_path.rstrip("?")))
    get_session().commit()  # the session's last use, when find noted it
    g.console = signed
    if request.method == "POST":
        _check_origin()
        sent = request.form.get("csrf_token", "")
        if not hmac.compare_digest(sent.encode(), signed.csrf_token.encode()):
            raise Refused(400, "This form is stale or came from another site (CSRF check).")
    return None


def _check_origin() -> None:
    origin = request.headers.get("Origin")
    if request.method != "POST" or origin is None:
        return
    normal = normal_origin(origin)
    public = normal_origin(current_settings().public_url.rstrip("/"))
    if normal is None or (urlsplit(normal).netloc != request.host and normal != public):
        raise Refused(403, "This change came from another site (Origin check).")


def csrf_context() -> dict[str, Any]:
    signed = g.get("console")
    return {"csrf_token": signed.csrf_token if signed else "", "signed_in": signed is not None}


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    if request.method == "GET":
        return render_template("sign_in.html", message=None, next=_next())
    limit: ClientRateLimit = current_app.extensions["receiver.console_sign_in_limit"]
    wait = limit.hit("console-sign-in", request.remote_addr or "")
    if wait is not None:
        message = f"Too many sign-in attempts from this address: try again in {wait} s."
        page = render_template("sign_in.html", message=message, next=_next())
        return Response(page, 429, {"Retry-After": str(wait)})
    session = get_session()
    started = sessions.start(session, request.form.get("admin_token", ""), datetime.now(UTC))
    if started is None:
        return render_template("sign_in.html", message=WRONG_TOKEN, next=_next()), 401
    session.commit()
    cookie, _ = started
    response = redirect(_next())
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(sessions.LIFETIME.total_seconds()),
        path=url_for("console.home"),
        secure=_https(),
        httponly=True,
        samesite="Lax",
    )
    return response


@bp.route("/sign-out", methods=["POST"])
def sign_out() -> BaseResponse:
    session = get_session()
    sessions.end(session, request.cookies.get(COOKIE, ""))
    session.commit()
    response = redirect(url_for("console.sign_in", done="signed-out"))
    response.delete_cookie(COOKIE, path=url_for("console.home"), secure=_https(), httponly=True)
    return response


def _next() -> str:
    """Where to go once signed in: a console page only, never another site."""
    target = request.values.get("next", "")
    home = url_for("console.home")
    if target.startswith(home) and not target.startswith("//") and "\\" not in target:
        return target
    return home


def _https() -> bool:
    # Secure when the browser reaches the receiver over HTTPS; a first run on plain HTTP at
    # 127.0.0.1 keeps working (a Secure cookie would never be sent back there).
    return request.is_secure or current_settings().public_url.lower().startswith("https:")
