"""Alembic environment: runs the package's migrations against the hub's engine."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

import civicshare.models  # noqa: F401  (registers every table on Base.metadata)
from civicshare.config import load_settings
from civicshare.db import Base, include_name, make_engine

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if isinstance(engine, Engine):
        return engine
    return make_engine(load_settings().resolved_database_url)


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_name=include_name,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
