"""The browser's side of ingestion (CONTRACT section 5): CORS preflights on /v1/, the gate a
browser key passes on every door (its origins, its rate limit), and the CORS headers of the
answer, errors included, so that Analytics.js can read a 429's Retry-After.
"""

from __future__ import annotations

import threading

from cachetools import LRUCache
from flask import Flask, Response, current_app, g, request

from receiver.accounts import find_key_access
from receiver.browser import KeyAccess
from receiver.credentials import API_KEY_KIND, parse_credential
from receiver.db import engine_of, run_transaction
from receiver.errors import Forbidden, OverLimit

# Analytics.js sends Authorization and X-Retry-Count, so each of its posts is preflighted; a
# day's Max-Age (Chromium caps it at two hours) spares most of them.
ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Content-Type, Authorization, X-Retry-Count, X-Api-Key"
PREFLIGHT_MAX_AGE_S = 86_400
EXPOSE_HEADERS = "Retry-After, X-Request-Id"


def preflight() -> Response | None:
    """before_request: answers an OPTIONS on any /v1/ path, whatever key the post will carry
    (a preflight carries none): the post itself is checked."""
    if request.method != "OPTIONS" or not request.path.startswith("/v1/"):
        return None
    response = Response(status=204)
    origin = request.headers.get("Origin")
    if origin is not None:
        response.headers.update(
            {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
                "Vary": "Origin",
            }
        )
    return response


def admit(api_key: str | None) -> None:
    """Lets a request with this key on, or raises: a browser key from an origin it does not
    allow is a 403, one client over the key's rate limit a 429. Other keys, unknown ones
    included (answered 401 later), pass as they are."""
    access = key_access(api_key) if api_key else None
    if access is None or not access.is_browser:
        return
    g.delivery_account_id = access.account_id  # a refusal below is the account's delivery too
    origin = request.headers.get("Origin")
    if origin is not None:
        if not access.allows(origin):
            raise Forbidden(
                f"This browser key is not allowed from {origin[:300]}: add the origin to a "
                "new browser key (POST /admin/keys), or send from one of its origins."
            )
        allow_origin(origin)
    wait = current_app.extensions["receiver.browser_rate_limit"].hit(
        f"{access.account_id}:{access.key_id}", request.remote_addr or ""
    )
    if wait is not None:
        raise OverLimit(
            "Too many requests from this address with this browser key: retry later.",
            headers={"Retry-After": str(wait)},
        )


def allow_origin(origin: str) -> None:
    g.cors_origin = origin


def add_cors_headers(response: Response) -> Response:
    """after_request: the answer to an allowed origin carries its CORS headers."""
    origin = g.get("cors_origin")
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        response.headers.add("Vary", "Origin")
    return response


# A key's kind and origins never change, so this process keeps them once read, by the key's
# hash (no key in the clear stays in memory). Revocation is not read from here: the store
# checks it on every request.
_accesses: LRUCache[bytes, KeyAccess] = LRUCache(maxsize=4096)
_accesses_lock = threading.Lock()


def key_access(api_key: str) -> KeyAccess | None:
    key = parse_credential(api_key, API_KEY_KIND)
    if key is None:
        return None
    with _accesses_lock:
        known = _accesses.get(key.digest)
    if known is not None:
        return known
    found = run_transaction(
        engine_of(current_app), lambda session: find_key_access(session, api_key)
    )
    if found is not None:
        with _accesses_lock:
            _accesses[key.digest] = found
    return found


def init_app(app: Flask) -> None:
    app.before_request(preflight)
    app.after_request(add_cors_headers)
