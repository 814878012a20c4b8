"""The request id: the sender's own `X-Request-Id` when it is sane, else a new one; on every
answer and in every log line written for the request (CONTRACT section 8)."""

from __future__ import annotations

import os
import re

from flask import Flask, Response, g, has_request_context, request

from receiver.credentials import redact

HEADER = "X-Request-Id"
# Printable ASCII only: the id is echoed in a header and written to the logs as it came.
_SANE = re.compile(r"[\x20-\x7e]{1,128}")


def sane(value: str | None) -> bool:
    """Up to 128 printable ASCII characters, not all blank, and no credential in it (the id
    goes to the logs as it is)."""
    return (
        value is not None
        and _SANE.fullmatch(value) is not None
        and not value.isspace()
        and redact(value) == value
    )


def new_id() -> str:
    """128 random bits in hex, as a UUID4 would hold, at a fraction of uuid4()'s cost."""
    return os.urandom(16).hex()


def current() -> str | None:
    """The id of the request being served, if any."""
    return g.get("request_id") if has_request_context() else None


def _assign() -> None:
    sent = request.headers.get(HEADER)
    g.request_id = sent if sane(sent) else new_id()


def _answer(response: Response) -> Response:
    response.headers[HEADER] = g.get("request_id") or new_id()
    return response


def init_app(app: Flask) -> None:
    """Registered before every other hook, so that even a refused body gets its id."""
    app.before_request(_assign)
    app.after_request(_answer)
