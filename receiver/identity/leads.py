"""Leads: one per account and email, enriched from traits, forgotten on request."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Session

from receiver import statements, store
from receiver.models import (
    clusters_table,
    companies_table,
    lead_emails_table,
    leads_table,
    signals_table,
    unlinks_table,
)
from receiver.store import GroupKey, group_key


def create_for_emails(
    session: Session, account_id: int, first_seen: dict[str, datetime], now: datetime
) -> tuple[dict[str, int], set[int]]:
    """The lead of each email, created with its first event time as first and last seen, and
    the ids of those this call created. The emails' identity locks are held: nobody else
    creates them meanwhile."""
    if not first_seen:
        return {}, set()
    c = leads_table.c
    rows = [
        {
            "account_id": account_id,
            "email": email,
            "traits": {},
            "trait_times": {},
            "first_seen_at": at,
            "last_seen_at": at,
            "created_at": now,
        }
        for email, at in sorted(first_seen.items())
    ]
    created = session.execute(statements.built(session, _leads_insert), rows).all()
    found = {email: lead_id for email, lead_id in created}
    new_ids = set(found.values())
    missing = sorted(set(first_seen) - set(found))
    if missing:
        found.update(
            session.execute(
                sa.select(c.email, c.id).where(c.account_id == account_id, c.email.in_(missing))
            ).all()
        )
    return found, new_ids


# A lead's traits, the time each was set, and its company.
LeadTraits = tuple[dict[str, Any], dict[str, str], str | None]


def lock_traits(
    session: Session, account_id: int, lead_ids: Sequence[int]
) -> dict[int, LeadTraits]:
    """The leads' traits, trait times and company, their rows locked until commit, in id
    order (identity/locks.py, order 4)."""
    if not lead_ids:
        return {}
    rows = statements.run(
        session, _locked_traits, {"account_id": account_id, "ids": list(lead_ids)}
    )
    return {row.id: (dict(row.traits), dict(row.trait_times), row.company) for row in rows}


def _locked_traits(db: statements.Store) -> sa.Select:
    c = leads_table.c
    return (
        sa.select(c.id, c.traits, c.trait_times, c.company)
        .where(c.account_id == sa.bindparam("account_id"), db.in_(c.id, "ids"))
        .order_by(c.id)
        .with_for_update()
    )


def write_traits(session: Session, account_id: int, changes: dict[int, dict[str, Any]]) -> None:
    """Each lead's merged traits and the fields they give, in one statement, in id order (the
    rows are locked already: lock_traits)."""
    if not changes:
        return
    c = leads_table.c
    names = sorted(next(iter(changes.values())))
    if session.get_bind().dialect.name == "postgresql":
        rows = [{"id": lead_id, **values} for lead_id, values in sorted(changes.items())]
        statements.run(
            session,
            _traits_update(tuple(names)),
            {"account_id": account_id, "ids": sorted(changes), "rows": store.json_text(rows)},
        )
        return
    session.execute(
        sa.update(leads_table)
        .where(c.account_id == account_id, c.id == sa.bindparam("lead_id"))
        .values({name: sa.bindparam(f"new_{name}") for name in names}),
        [
            {"lead_id": lead_id, **{f"new_{name}": values[name] for name in names}}
            for lead_id, values in sorted(changes.items())
        ],
    )


@functools.cache
def _traits_update(names: tuple[str, ...]) -> Callable[[statements.Store], sa.Update]:
    """The update of these columns of leads from rows of a JSON parameter (Postgres)."""

    def build(db: statements.Store) -> sa.Update:
        c = leads_table.c
        rows = (
            sa.func.jsonb_to_recordset(sa.bindparam("rows", type_=JSONB))
            .table_valued(sa.column("id", sa.BigInteger), *(sa.column(n, c[n].type) for n in names))
            .render_derived(name="x", with_types=True)
        )
        return (
            sa.update(leads_table)
            # The leads found by id, not by the join alone: a generic plan guesses a hundred
            # rows from the function scan and would hash every lead of the account.
            .where(
                c.account_id == sa.bindparam("account_id"),
                db.in_(c.id, "ids"),
                c.id == rows.c.id,
            )
            .values({name: rows.c[name] for name in names})
        )

    return build


def write_companies(
    session: Session, account_id: int, groups: dict[int, tuple[str, str | None]]
) -> None:
    """The group each lead was last seen in; its company fills the lead's only while the
    lead's traits name none. One statement, in lead id order."""
    if not groups:
        return
    c = leads_table.c
    session.execute(
        sa.update(leads_table)
        .where(c.account_id == account_id, c.id == sa.bindparam("lead_id"))
        .values(
            group_id=sa.bindparam("new_group_id"),
            company=sa.func.coalesce(c.company, sa.bindparam("new_company")),
        ),
        [
            {"lead_id": lead_id, "new_group_id": group_id, "new_company": name}
            for lead_id, (group_id, name) in sorted(groups.items())
        ],
    )


def record_companies(
    session: Session, account_id: int, companies: dict[str, dict[str, Any]], now: datetime
) -> None:
    """Upsert each group's company, in group id order."""
    if not companies:
        return
    session.execute(
        statements.built(session, _companies_upsert),
        [
            {
                "account_id": account_id,
                "group_id": group_id,
                "name": name if isinstance(name := traits.get("name"), str) else None,
                "traits": traits,
                "updated_at": now,
            }
            for group_id, traits in sorted(companies.items())
        ],
    )


def _leads_insert(db: statements.Store) -> Any:
    c = leads_table.c
    return (
        db.insert(leads_table)
        .on_conflict_do_nothing(index_elements=[c.account_id, c.email])
        .returning(c.email, c.id)
    )


def _companies_upsert(db: statements.Store) -> Any:
    c = companies_table.c
    statement = db.insert(companies_table)
    return statement.on_conflict_do_update(
        index_elements=[c.account_id, c.group_id],
        set_={
            "name": statement.excluded.name,
            "traits": statement.excluded.traits,
            "updated_at": statement.excluded.updated_at,
        },
    )


def forget(
    session: Session,
    account_id: int,
    lead_id: int | None,
    user_ids: Sequence[str],
    anonymous_ids: Sequence[str],
) -> list[GroupKey]:
    """Delete a person: their lead, its signals, and every signal of their identifiers.
    Returns the Signal Queue groups of the deleted signals that were still unmapped."""
    s = signals_table.c
    mine = [s.user_id.in_(user_ids), sa.and_(s.is_cold, s.anonymous_id.in_(anonymous_ids))]
    if lead_id is not None:
        mine.append(s.lead_id == lead_id)
    deleted = session.execute(
        sa.delete(signals_table)
        .where(s.account_id == account_id, sa.or_(*mine))
        .returning(s.source, s.event_type, s.event_name, s.rule_id)
    )
    unmapped = [
        group_key(r.source, r.event_type, r.event_name) for r in deleted if r.rule_id is None
    ]
    if lead_id is not None:
        c, e, u = leads_table.c, lead_emails_table.c, unlinks_table.c
        session.execute(sa.delete(leads_table).where(c.account_id == account_id, c.id == lead_id))
        session.execute(
            sa.delete(lead_emails_table).where(e.account_id == account_id, e.lead_id == lead_id)
        )
        session.execute(
            sa.delete(unlinks_table).where(u.account_id == account_id, u.lead_id == lead_id)
        )
    return unmapped


def lead_ids_by_email(session: Session, account_id: int, emails: Sequence[str]) -> dict[str, int]:
    """The lead each email names: its own, or the one a lead with it was merged into."""
    params = {"account_id": account_id, "emails": list(emails)}
    return {row.named_by: row.id for row in statements.run(session, by_email_statement, params)}


def by_email_statement(db: statements.Store) -> sa.CompoundSelect:
    """The lead each email names (`named_by`): its own, or the one a lead with it was merged
    into; with the lead's cluster (identity/graph.py reads it with a body's graph)."""
    lead, c, e = leads_table.c, clusters_table.c, lead_emails_table.c

    def with_cluster(named_by: Any) -> sa.Select:
        # A subquery, not a join: looked up lead by lead in any plan, a prepared statement's
        # generic plan included.
        cluster_id = (
            sa.select(c.id)
            .where(c.account_id == lead.account_id, c.lead_id == lead.id)
            .scalar_subquery()
            .label("cluster_id")
        )
        return sa.select(lead.id, cluster_id, named_by.label("named_by")).select_from(leads_table)

    own = with_cluster(lead.email).where(
        lead.account_id == sa.bindparam("account_id"), db.in_(lead.email, "emails")
    )
    merged = (
        with_cluster(e.email)
        .join(lead_emails_table, sa.and_(e.account_id == lead.account_id, e.lead_id == lead.id))
        .where(lead.account_id == sa.bindparam("account_id"), db.in_(e.email, "emails"))
    )
    return sa.union_all(own, merged)
