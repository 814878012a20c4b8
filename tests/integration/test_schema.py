"""The migrations are the schema's one source: the models must agree with them."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from receiver import models  # noqa: F401  (registers the tables)


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
