"""Admin bodies are JSON: one sent as something else (curl's `-d` sends a form) is refused
with a message that says so, rather than read as no body at all."""

from __future__ import annotations

from flask import request

from receiver.errors import UnsupportedMediaType


def require_json_body() -> None:
    """before_request of every admin blueprint: 415 for a body that is not declared JSON."""
    if request.method in ("POST", "PUT", "PATCH") and request.get_data() and not request.is_json:
        raise UnsupportedMediaType()
