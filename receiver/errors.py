"""One exception family with a status, turned into a JSON `{"message": ...}` in one place."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from sqlalchemy import exc
from werkzeug import exceptions as werkzeug_exceptions
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from receiver import metrics

log = logging.getLogger(__name__)


class ReceiverError(Exception):
    status = 500
    message = "Internal error."

    def __init__(
        self, message: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.headers = headers or {}
        self.extra = extra


class BadRequest(ReceiverError):
    status = 400


class Unauthorized(ReceiverError):
    status = 401
    message = "Unknown or revoked API key."


class Forbidden(ReceiverError):
    status = 403
    message = "Not allowed."


class NotFound(ReceiverError):
    status = 404
    message = "Not found."


class Conflict(ReceiverError):
    status = 409


class Unprocessable(ReceiverError):
    """A well-formed body that cannot be saved: 422 with field-level errors, as the schemas'."""

    status = 422


class PayloadTooLarge(ReceiverError):
    status = 413


class UnsupportedMediaType(ReceiverError):
    status = 415
    message = "Send the body as JSON, with the header Content-Type: application/json."


class OverLimit(ReceiverError):
    status = 429


class StoreUnavailable(ReceiverError):
    status = 503
    message = "The store is unavailable; nothing in this request was stored. Retry later."


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    response = jsonify({"message": message, **extra})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _routing_error(error: HTTPException, max_body_bytes: int) -> tuple[str, dict[str, str]]:
    """Werkzeug's own errors, given a message that says what to do instead of its HTML-era
    text ("If you entered the URL manually...")."""
    if isinstance(error, MethodNotAllowed):
        allowed = sorted(set(error.valid_methods or ()) - {"HEAD", "OPTIONS"})
        return (
            f"{request.method} is not allowed here: use {' or '.join(allowed)}.",
            {"Allow": ", ".join(error.valid_methods or ())},
        )
    if isinstance(error, werkzeug_exceptions.NotFound):
        return "No such path: /openapi.json lists the paths of this receiver.", {}
    if isinstance(error, werkzeug_exceptions.RequestEntityTooLarge):
        return (
            f"Body larger than this receiver's limit of {max_body_bytes} bytes "
            "(MAX_BODY_BYTES): send smaller batches.",
            {},
        )
    return error.description or error.name, {}


def init_app(app: Flask, retry_after_unavailable_s: int, max_body_bytes: int) -> None:
    unavailable_headers = {"Retry-After": str(retry_after_unavailable_s)}

    @app.errorhandler(ReceiverError)
    def _receiver_error(error: ReceiverError) -> Response:
        headers = dict(error.headers)
        if error.status == 503:
            headers.update(unavailable_headers)
        return error_response(error.status, error.message, headers, **error.extra)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        # webargs (behind flask-smorest) puts field-level messages, by location, on data.
        located = (getattr(error, "data", None) or {}).get("messages")
        if located:
            fields: dict[str, Any] = {}
            for problems in located.values():
                fields.update(problems if isinstance(problems, dict) else {"_schema": problems})
            return error_response(status, "Invalid request: see `errors`.", errors=fields)
        message, headers = _routing_error(error, max_body_bytes)
        return error_response(status, message, headers)

    @app.errorhandler(exc.OperationalError)
    @app.errorhandler(exc.InterfaceError)
    @app.errorhandler(exc.TimeoutError)
    def _store_unavailable(error: Exception) -> Response:
        metrics.count_unavailable(error)
        log.warning("store unavailable: %s", error.__class__.__name__, exc_info=error)
        return error_response(503, StoreUnavailable.message, unavailable_headers)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
            return _store_unavailable(error)
        log.exception("unhandled error")
        return error_response(500, ReceiverError.message)
