"""Template filters of the console: times in UTC, JSON as the store holds it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from receiver import exact_json
from receiver.console.blueprint import bp


@bp.app_template_filter("console_time")
def console_time(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    # SQLite hands times back without their offset; they are UTC.
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.app_template_filter("console_json")
def console_json(value: Any) -> str:
    return exact_json.dumps(value, option=orjson.OPT_INDENT_2).decode()


@bp.app_template_filter("console_percent")
def console_percent(share: float) -> str:
    return f"{share * 100:.0f}%"
