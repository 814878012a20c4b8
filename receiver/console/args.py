"""Reading a page's query arguments: out-of-range or malformed ones fall back to defaults,
as a link typed by hand should still open a page."""

from __future__ import annotations

from flask import request

# What each page's `done` argument says once a change is made (a redirect after a POST).
NOTICES = {
    "saved": "Rule saved.",
    "created": "Rule created.",
    "enabled": "Rule enabled.",
    "disabled": "Rule disabled.",
    "deleted": "Rule deleted: the signals it mapped keep their mapping.",
    "reverted": "Rule reverted, as a new version.",
    "unchanged": "Nothing changed: the rule already had that definition.",
    "cancelled": "Backfill cancelled: what it mapped stays mapped.",
    "revoked": "Key revoked: requests with it are refused from now on.",
    "unlinked": "Identifier unlinked.",
    "signed-out": "Signed out.",
}


def int_arg(name: str, default: int, low: int, high: int) -> int:
    text = request.args.get(name, "")
    if not (text.isascii() and text.isdigit()):
        return default
    value = int(text)
    return value if low <= value <= high else default


def notice() -> str | None:
    return NOTICES.get(request.args.get("done", ""))
