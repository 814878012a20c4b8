"""What a browser key allows (CONTRACT section 5): the origins it is honoured from, and the
rate limit that keeps one client of a public key from spending its account's plan.

A browser key sits in a web page, so anyone can read it and send with it, as with Segment's
write key. The origin check stops other sites' pages from sending with it through their
visitors' browsers; it does not stop a script that sets any Origin it likes, or none. The
rate limit bounds what one client address can send with one key.

The limit is kept in each process's memory: under gunicorn each worker counts on its own, so
one client may send up to WEB_CONCURRENCY times the limit when its requests spread over the
workers. It bounds an abusive client to a known multiple of a generous figure at the cost of
no shared service and no write per request; the plan's own limit, which is what is billed, is
counted exactly in the store.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

SERVER, BROWSER = "server", "browser"
KEY_KINDS = (SERVER, BROWSER)
ANY_ORIGIN = "*"
MAX_ORIGINS = 100
MAX_ORIGIN_LENGTH = 300
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class KeyAccess:
    """What a key is allowed to do beyond ingesting: its kind and, for a browser key, its
    origins. Neither changes over a key's life."""

    account_id: int
    key_id: int
    kind: str
    allowed_origins: tuple[str, ...] = ()

    @property
    def is_browser(self) -> bool:
        return self.kind == BROWSER

    def allows(self, origin: str) -> bool:
        return ANY_ORIGIN in self.allowed_origins or normal_origin(origin) in self.allowed_origins


def normal_origin(text: str) -> str | None:
    """An origin as browsers send it in `Origin` (scheme://host[:port], lower case, no
    default port), or None when text is not exactly one: a path, a query, credentials or a
    trailing slash make it a URL, not an origin."""
    if len(text) > MAX_ORIGIN_LENGTH or text != text.strip():
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc or text.endswith(":"):
        return None
    host = parts.hostname
    if ":" in host:  # an IPv6 address keeps its brackets in an origin
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origins_problem(origins: list[str]) -> str | None:
    """Why a list cannot be a browser key's allowed_origins, or None."""
    if not origins:
        return "A browser key needs at least one origin, or `*`."
    if len(origins) > MAX_ORIGINS:
        return f"At most {MAX_ORIGINS} origins."
    for origin in origins:
        if origin != ANY_ORIGIN and normal_origin(origin) is None:
            return (
                f"Not an origin: {origin[:MAX_ORIGIN_LENGTH]!r}. Write scheme://host[:port] "
                "as the browser shows it (e.g. https://www.example.com), or `*`."
            )
    return None


def normal_origins(origins: list[str]) -> list[str]:
    """Valid origins (see origins_problem) in the form the check compares, each once."""
    normal = [ANY_ORIGIN if o == ANY_ORIGIN else normal_origin(o) or o for o in origins]
    return list(dict.fromkeys(normal))


class ClientRateLimit:
    """A moving-window limit per (key, client address), in this process's memory."""

    def __init__(self, limit: str) -> None:
        try:
            self.item: RateLimitItem = parse(limit)
        except ValueError:
            raise ValueError(
                f"BROWSER_RATE_LIMIT {limit!r} is not a rate such as 1000/minute"
            ) from None
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._lock = threading.Lock()

    def hit(self, key: str, client: str) -> int | None:
        """Count one request; None when it is within the limit, else the seconds until the
        client may send again (for Retry-After)."""
        with self._lock:
            if self._limiter.hit(self.item, key, client):
                return None
            reset = self._limiter.get_window_stats(self.item, key, client).reset_time
        return max(1, math.ceil(reset - time.time()))
