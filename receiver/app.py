"""The Flask application factory."""

from __future__ import annotations

from functools import partial

from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask, Response, request
from flask_smorest import Api
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map

from receiver import (
    cli,
    console,
    content_encoding,
    db,
    deliveries,
    errors,
    logs,
    request_id,
    sealing,
)
from receiver.api import (
    admin_account,
    admin_deliveries,
    admin_leads,
    admin_queue,
    admin_rules,
    admin_tokens,
    collect,
    cors,
    health,
    metrics,
    webhook,
)
from receiver.browser import ClientRateLimit
from receiver.config import Settings
from receiver.schemas import schema_name


class IdConverter(IntegerConverter):
    """A row id in a path: a positive bigint, or no such route (404), never a store error."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=2**63 - 1)


OPENAPI = {
    "API_TITLE": "receiver",
    "API_VERSION": "1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "API_SPEC_OPTIONS": {
        "components": {
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "http", "scheme": "basic"},
            }
        },
    },
}


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    app = Flask(__name__)
    # Before every other hook: a request refused by the next one is timed and has its id.
    metrics.init_app(app)
    request_id.init_app(app)
    # Werkzeug reads a body sent without Content-Length (chunked) up to MAX_CONTENT_LENGTH and
    # hands on what it read, cut short, as if whole: let it read one byte past the limit, so
    # that a longer body shows and is refused.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.wsgi_app = content_encoding.DecodeBodies(  # type: ignore[method-assign]
        app.wsgi_app, settings.max_body_bytes
    )
    app.before_request(lambda: content_encoding.refuse_undecodable_body(request.environ))
    app.before_request(partial(_refuse_body_over, settings.max_body_bytes))
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["receiver.settings"] = settings
    app.extensions["receiver.browser_rate_limit"] = ClientRateLimit(settings.browser_rate_limit)
    if settings.trusted_proxy_hops > 0:
        # Only the client's address: PUBLIC_URL says how browsers reach the receiver.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_hops)  # type: ignore[method-assign]
    app.config.update(OPENAPI)
    sealing.configure(settings)
    db.init_app(app, settings)
    deliveries.init_app(app, settings)
    app.url_map.converters["id"] = IdConverter
    api = Api(
        app, spec_kwargs={"marshmallow_plugin": MarshmallowPlugin(schema_name_resolver=schema_name)}
    )
    for blueprint in (
        webhook.bp,
        collect.bp,
        admin_rules.blp,
        admin_queue.blp,
        admin_leads.blp,
        admin_account.blp,
        admin_deliveries.blp,
        admin_tokens.blp,
    ):
        api.register_blueprint(blueprint)
    app.register_blueprint(health.bp)
    console.init_app(app)
    cors.init_app(app)
    # After Api(app), which registers error handlers of its own: ours give the JSON shape.
    errors.init_app(app, settings.retry_after_unavailable_s, settings.max_body_bytes)
    app.after_request(_no_content_type_without_content)
    cli.init_app(app)
    return app


def _refuse_body_over(limit: int) -> None:
    if len(request.get_data()) > limit:
        raise RequestEntityTooLarge()


def _no_content_type_without_content(response: Response) -> Response:
    # A 204 has no body, so no type; Flask gives every response text/html by default.
    if response.status_code == 204:
        response.headers.pop("Content-Type", None)
    return response
