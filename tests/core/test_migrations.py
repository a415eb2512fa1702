"""Migrations and models agree, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from civicshare.db import Base, alembic_config, current_revisions, include_name
from civicshare.hub import Hub


def test_upgraded_schema_matches_the_models(hub: Hub) -> None:
    with hub.db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": include_name}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_database_is_at_every_head(hub: Hub) -> None:
    script = ScriptDirectory.from_config(alembic_config())
    # A head that another branch depends on (catalog c001 under storage s001) is not recorded
    # itself once the dependent revision is applied: compare what the recorded ones imply.
    current = current_revisions(hub.db.engine)
    applied = {r.revision for r in script.iterate_revisions(current, "base")}
    assert set(script.get_heads()) <= applied


def test_upgrade_is_idempotent(hub: Hub) -> None:
    before = current_revisions(hub.db.engine)
    hub.db.upgrade()
    assert current_revisions(hub.db.engine) == before
