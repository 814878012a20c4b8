"""Scores that fade: a signal's score weighs `1 - age / window` (age in days by event time,
at the time asked; nothing past the window; an event dated in the future counts as now).

The analyst view `lead_summary.score_recent` computes the same in SQL (receiver/sql/views.sql,
its window written by `receiver init-db` from SCORE_WINDOW_DAYS): change both together.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

SECONDS_PER_DAY = 86_400


def age_days(dialect: str, occurred_at: sa.ColumnElement, now: datetime) -> sa.ColumnElement:
    if dialect == "postgresql":
        elapsed = sa.literal(now, sa.DateTime(timezone=True)) - occurred_at
        return sa.extract("epoch", elapsed) / SECONDS_PER_DAY
    # SQLite keeps times as UTC text without their offset.
    naive = now.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    return sa.func.julianday(naive) - sa.func.julianday(occurred_at)


def recent_score(
    dialect: str,
    score: sa.ColumnElement,
    occurred_at: sa.ColumnElement,
    now: datetime,
    window_days: int,
) -> sa.ColumnElement:
    """The faded score of one signal, as a SQL expression (sum it per lead)."""
    age = age_days(dialect, occurred_at, now)
    weight = sa.case(
        (age <= 0, 1.0),
        (age >= window_days, 0.0),
        else_=1.0 - age / float(window_days),
    )
    return sa.func.coalesce(score, 0) * weight


def check_window(window_days: int) -> int:
    if window_days < 1:
        raise ValueError(
            f"SCORE_WINDOW_DAYS must be a whole number of days, at least 1: {window_days}"
        )
    return window_days
