"""The admin console at /console/ (CONTRACT section 7): server-rendered pages over the same
services as the JSON API, for an admin signed in with an admin token. A top layer, as api/ is:
it imports services, nothing below imports it."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, redirect, render_template, url_for
from werkzeug.wrappers import Response as BaseResponse

from receiver.browser import ClientRateLimit

# Each page module adds its routes to bp as it is imported.
from receiver.console import account, auth, deliveries, filters, leads, queue, rules  # noqa: F401
from receiver.console.blueprint import bp
from receiver.errors import ReceiverError

# Everything the pages use is the receiver's own: no other origin can be loaded or framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@bp.route("/", methods=["GET"])
def home() -> BaseResponse:
    return redirect(url_for("console.queue_page"))


def _secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _refused(refused: auth.Refused) -> Any:
    return render_template("error.html", message=refused.message), refused.status


def _receiver_error(error: ReceiverError) -> Any:
    # As the JSON API's: a 5xx says nothing of its cause (the log does).
    message = error.message if error.status < 500 else "The receiver could not answer: retry."
    return render_template("error.html", message=message), error.status


bp.before_request(auth.require_session)
bp.after_request(_secure)
bp.context_processor(auth.csrf_context)
bp.register_error_handler(auth.Refused, _refused)
bp.register_error_handler(ReceiverError, _receiver_error)


def init_app(app: Flask) -> None:
    app.extensions["receiver.console_sign_in_limit"] = ClientRateLimit(auth.SIGN_IN_LIMIT)
    app.register_blueprint(bp)
