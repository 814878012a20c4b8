"""A lead as admins see it: its fields, identifiers, totals and signals. Read only; the JSON
API (api/admin_leads.py) and the console serve the same answers from here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from receiver.identity import leads
from receiver.identity.identifiers import normalise_email
from receiver.models import (
    clusters_table,
    identities_table,
    lead_emails_table,
    leads_table,
    signals_table,
    unlinks_table,
)
from receiver.scoring import recent_score

ORDERS = ("last_seen", "score")


def lead_id_for_email(session: Session, account_id: int, email: str) -> int | None:
    """The lead the email names: its own, or one it was merged into."""
    normalised = normalise_email(email)
    if not normalised:
        return None
    return leads.lead_ids_by_email(session, account_id, [normalised]).get(normalised)


def list_leads(
    session: Session,
    account_id: int,
    page: int,
    per_page: int,
    order: str,
    window_days: int,
) -> dict[str, Any]:
    """One page of the account's leads, most recently seen first, or with `order="score"` by
    score_recent, highest first; each with its totals."""
    l = leads_table.c  # noqa: E741
    mine = l.account_id == account_id
    total = session.execute(sa.select(sa.func.count()).where(mine)).scalar_one()
    query, ordering = sa.select(leads_table).where(mine), [l.last_seen_at.desc(), l.id.desc()]
    if order == "score":
        ranked = _aggregate(session, account_id, window_days).subquery()
        query = query.outerjoin(ranked, ranked.c.lead_id == l.id)
        ordering.insert(0, sa.func.coalesce(ranked.c.score_recent, 0).desc())
    rows = (
        session.execute(query.order_by(*ordering).limit(per_page).offset((page - 1) * per_page))
        .mappings()
        .all()
    )
    totals = _totals(session, account_id, [row["id"] for row in rows], window_days)
    return {
        "total": total,
        "page": page,
        "per_page": per_page,
        "leads": [{**row, **totals[row["id"]]} for row in rows],
    }


def lead_detail(
    session: Session,
    account_id: int,
    lead_id: int | None,
    signals_limit: int,
    window_days: int,
    signals_before: tuple[datetime, int] | None = None,
) -> dict[str, Any] | None:
    """The lead with its identifiers, totals and up to signals_limit signals, newest first
    (older than `signals_before`, an (occurred_at, id) pair, to page on); None if the account
    has no such lead."""
    l, s = leads_table.c, signals_table.c  # noqa: E741
    lead = (
        session.execute(sa.select(leads_table).where(l.account_id == account_id, l.id == lead_id))
        .mappings()
        .first()
    )
    if lead is None:
        return None
    i, c = identities_table.c, clusters_table.c
    identities = (
        session.execute(
            sa.select(i.kind, i.value, i.blocked_at)
            .join(clusters_table, sa.and_(c.account_id == i.account_id, c.id == i.cluster_id))
            .where(i.account_id == account_id, c.lead_id == lead_id)
            .order_by(i.kind, i.value)
        )
        .mappings()
        .all()
    )
    query = sa.select(signals_table).where(s.account_id == account_id, s.lead_id == lead_id)
    if signals_before is not None:
        query = query.where(sa.tuple_(s.occurred_at, s.id) < sa.tuple_(*signals_before))
    signals = (
        session.execute(query.order_by(s.occurred_at.desc(), s.id.desc()).limit(signals_limit))
        .mappings()
        .all()
    )
    totals = _totals(session, account_id, [lead["id"]], window_days)[lead["id"]]
    shown = _each_identifier_once(session, account_id, lead["id"], identities)
    e, u = lead_emails_table.c, unlinks_table.c
    merged = session.execute(
        sa.select(e.email).where(e.account_id == account_id, e.lead_id == lead_id).order_by(e.email)
    ).scalars()
    unlinked = session.execute(
        sa.select(u.kind, u.value, u.unlinked_at, u.signals_moved)
        .where(u.account_id == account_id, u.lead_id == lead_id)
        .order_by(u.unlinked_at, u.kind, u.value)
    ).mappings()
    return {
        **lead,
        **totals,
        "identities": shown,
        "merged_emails": list(merged),
        "unlinked": [dict(row) for row in unlinked],
        "signals": signals,
    }


def _each_identifier_once(
    session: Session, account_id: int, lead_id: int, identities: Sequence[Any]
) -> list[dict[str, Any]]:
    """An alias's previousId may be an anonymousId or an earlier userId, so the graph links it
    as both. It is shown once: as the kind the lead's events carried it as, or as
    `previous_id` when none did. A value that events carried as both kinds shows both."""
    kinds: dict[str, list[Any]] = {}
    for identity in identities:
        kinds.setdefault(identity["value"], []).append(identity)
    twice = [value for value, rows in kinds.items() if len(rows) > 1]
    seen = _kinds_carried(session, account_id, lead_id, twice) if twice else {}
    shown = []
    for value, rows in kinds.items():
        if len(rows) == 1:
            shown.append(dict(rows[0]))
            continue
        blocked_at = next((r["blocked_at"] for r in rows if r["blocked_at"]), None)
        for kind in sorted(seen.get(value) or {"previous_id"}):
            shown.append({"kind": kind, "value": value, "blocked_at": blocked_at})
    return sorted(shown, key=lambda identity: (identity["kind"], identity["value"]))


def _kinds_carried(
    session: Session, account_id: int, lead_id: int, values: list[str]
) -> dict[str, set[str]]:
    """Of values, which the lead's signals carried as anonymousId and which as userId."""
    s = signals_table.c
    carried: dict[str, set[str]] = {}
    for kind, column in (("anonymous_id", s.anonymous_id), ("user_id", s.user_id)):
        found = session.execute(
            sa.select(column)
            .distinct()
            .where(s.account_id == account_id, s.lead_id == lead_id, column.in_(values))
        ).scalars()
        for value in found:
            carried.setdefault(value, set()).add(kind)
    return carried


def _aggregate(session: Session, account_id: int, window_days: int) -> sa.Select:
    """Signal count, score and score_recent per lead of the account."""
    s = signals_table.c
    dialect = session.get_bind().dialect.name
    faded = recent_score(dialect, s.score, s.occurred_at, datetime.now(UTC), window_days)
    return (
        sa.select(
            s.lead_id,
            sa.func.count().label("signal_count"),
            sa.func.coalesce(sa.func.sum(s.score), 0).label("score"),
            sa.func.coalesce(sa.func.sum(faded), 0).label("score_recent"),
        )
        .where(s.account_id == account_id, s.lead_id.is_not(None))
        .group_by(s.lead_id)
    )


def _totals(
    session: Session, account_id: int, lead_ids: list[int], window_days: int
) -> dict[int, dict[str, Any]]:
    """Signal count, score and score_recent of each lead, in one query."""
    rows = session.execute(
        _aggregate(session, account_id, window_days).where(signals_table.c.lead_id.in_(lead_ids))
    ).mappings()
    found = {
        row["lead_id"]: {
            "signal_count": row["signal_count"],
            "score": row["score"],
            "score_recent": round(float(row["score_recent"]), 2),
        }
        for row in rows
    }
    none = {"signal_count": 0, "score": 0, "score_recent": 0.0}
    return {lead_id: found.get(lead_id, none) for lead_id in lead_ids}
