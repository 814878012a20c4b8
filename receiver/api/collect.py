"""Segment's tracking API at /v1/ (CONTRACT sections 2 and 5): its server libraries' paths,
the short ones Analytics.js posts to, and the settings Analytics.js loads instead of its CDN's.

The requests themselves are section 2's, served by webhook.receive; this module finds the key
(Basic auth, else the body's writeKey) and the client's address for context.ip.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson
from flask import Response, current_app, jsonify, request
from flask_smorest import Blueprint

from receiver.accounts import find_key_access
from receiver.api.cors import allow_origin
from receiver.api.webhook import EVENTS_DOC, basic_auth_key, receive, tracking_call
from receiver.config import current_settings
from receiver.db import engine_of, run_transaction
from receiver.errors import NotFound

bp = Blueprint(
    "collect",
    __name__,
    description="Segment's tracking API, for its server libraries and Analytics.js "
    "(CONTRACT sections 2 and 5).",
)

# Analytics.js's paths, by the tracking API's names.
SHORT_CALLS = {
    "b": "batch",
    "t": "track",
    "i": "identify",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}


@bp.post("/v1/<call>", strict_slashes=False)
@bp.doc(**EVENTS_DOC, security=[{"apiKey": []}])
def tracking_api(call: str) -> Response:
    api_key = basic_auth_key() or body_write_key()
    default_type = tracking_call(SHORT_CALLS.get(call, call), api_key)
    return receive(api_key, default_type, client_ip=request.remote_addr)


# Analytics.js's bodies are small (its batches stop at 500 KB): a larger one without Basic
# auth is not parsed to look for a key, so that no sender without a key costs a big parse.
MAX_WRITE_KEY_BODY_BYTES = 1024 * 1024


def body_write_key() -> str | None:
    """The writeKey of a body, as Analytics.js puts it in each event and in a batch."""
    raw = request.get_data()
    if len(raw) > MAX_WRITE_KEY_BODY_BYTES:
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None  # answered as any bad body is, once the key is known
    if isinstance(body, dict):
        key = body.get("writeKey")
        if key is None and isinstance(body.get("batch"), list) and body["batch"]:
            first = body["batch"][0]
            key = first.get("writeKey") if isinstance(first, dict) else None
        return key if isinstance(key, str) else None
    return None


@bp.get("/v1/projects/<api_key>/settings")
@bp.doc(
    responses={
        "200": {"description": "The settings object Analytics.js loads from its CDN."},
        "404": {"description": "No such browser key, or a revoked one."},
    }
)
def settings(api_key: str) -> Response:
    """What Analytics.js needs to send here, and nothing that sends anywhere else."""
    access = run_transaction(
        engine_of(current_app), lambda session: find_key_access(session, api_key)
    )
    if access is None or not access.is_browser:
        raise NotFound("No such browser key, or it was revoked.")
    origin = request.headers.get("Origin")
    if origin is not None and access.allows(origin):
        allow_origin(origin)
    protocol, host = public_host()
    return jsonify(analytics_settings(api_key, f"{host}/v1", protocol))


def public_host() -> tuple[str, str]:
    """This receiver's scheme and host (with any path prefix), as browsers reach it."""
    public_url = current_settings().public_url
    if not public_url:
        return request.scheme, request.host
    parts = urlsplit(public_url)
    return parts.scheme or "https", parts.netloc + parts.path.rstrip("/")


def analytics_settings(api_key: str, api_host: str, protocol: str) -> dict[str, Any]:
    """The settings object of Analytics.js 2.0, with its one destination: this receiver.
    Fields the library reads and would otherwise default to Segment's services: its
    metrics (sampleRate 0: none sent), remote plugins and middleware (none to load)."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": api_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
