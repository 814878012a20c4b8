"""The migrations are the schema's one source: the models must agree with them."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from receiver import models, store  # noqa: F401  (models registers the tables)


def test_migrated_postgres_schema_matches_the_models(postgres_url):
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            differences = compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_every_primary_and_unique_key_leads_with_account_id():
    for table in SQLModel.metadata.sorted_tables:
        if table.name == "accounts":
            continue
        keys = [table.primary_key] + [
            c for c in table.constraints if isinstance(c, sa.UniqueConstraint)
        ]
        for key in keys:
            assert next(iter(key.columns)).name == "account_id", (table.name, key)


def test_every_id_sequence_has_the_name_allocate_ids_gives_it(postgres_url):
    """store.next_ids names the sequence rather than asking Postgres for it each time."""
    tables = [t for t in SQLModel.metadata.sorted_tables if "id" in t.c and t.c.id.identity]
    assert tables
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            for table in tables:
                found = connection.execute(
                    sa.text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": table.name}
                ).scalar_one()
                assert found == f"public.{store.id_sequence(table)}", table.name
    finally:
        engine.dispose()
