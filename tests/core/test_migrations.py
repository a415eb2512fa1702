"""Migrations and models agree, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from civicshare.db import Base, alembic_config, current_revisions
from civicshare.hub import Hub


def test_upgraded_schema_matches_the_models(hub: Hub) -> None:
    with hub.db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_database_is_at_every_head(hub: Hub) -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert set(current_revisions(hub.db.engine)) == set(heads)


def test_upgrade_is_idempotent(hub: Hub) -> None:
    before = current_revisions(hub.db.engine)
    hub.db.upgrade()
    assert current_revisions(hub.db.engine) == before
