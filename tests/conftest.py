"""Shared fixtures: a real hub on SQLite and on PostgreSQL, and a real hub process over HTTP.

Every test that uses ``hub`` (or anything built on it) runs once per metadata backend. PostgreSQL
tests each get their own schema, dropped afterwards. Under ``CI=true`` an unreachable PostgreSQL
fails the run; elsewhere those tests skip with a one-line reason.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from civicshare.config import Settings
from civicshare.hub import Hub, init_home
from tests.support.hubproc import HubProcess, start_hub_process

POSTGRES_URL = os.environ.get(
    "CIVICSHARE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# The real open-data files sit in ../shared/realdata beside the repository (as in CI).
REALDATA = Path(
    os.environ.get(
        "CIVICSHARE_REALDATA", Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
    )
)

_postgres_state: dict[str, str | None] = {}


def _postgres_problem() -> str | None:
    """None if PostgreSQL answers, else why not (checked once per session)."""
    if "problem" not in _postgres_state:
        try:
            engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            engine.dispose()
            _postgres_state["problem"] = None
        except Exception as exc:  # any driver error means unreachable
            _postgres_state["problem"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return _postgres_state["problem"]


def require_postgres() -> None:
    problem = _postgres_problem()
    if problem is None:
        return
    message = f"PostgreSQL at {POSTGRES_URL} is unreachable ({problem})"
    if IN_CI:
        pytest.fail(message + " — CI must test PostgreSQL", pytrace=False)
    pytest.skip(message)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    require_postgres()
    schema = "t_" + secrets.token_hex(6)
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def database_for(backend: str, folder: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'hub.db'}"
    else:
        with postgres_schema() as url:
            yield url


BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_for(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(home=tmp_path / "home", database_url=database_url)


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    hub, _created = init_home(settings)
    yield hub
    hub.close()


@pytest.fixture
def db(hub: Hub) -> Iterator[Session]:
    """A session whose work is committed at the end of the test (like a request boundary)."""
    with hub.db.session() as session:
        yield session


@pytest.fixture(scope="module", params=BACKENDS)
def hub_process(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubProcess]:
    """A real `civicshare serve` process with the demo logins, shared by a module's tests.

    Tests sharing it must not depend on each other's changes (use names of their own).
    """
    folder = tmp_path_factory.mktemp(f"hubproc-{request.param}")
    with database_for(request.param, folder) as url:
        settings = Settings(home=folder / "home", database_url=url)
        with start_hub_process(settings) as proc:
            yield proc


@pytest.fixture
def fresh_hub_process(settings: Settings) -> Iterator[HubProcess]:
    """A hub process of the test's own, for tests that need a pristine hub."""
    with start_hub_process(settings) as proc:
        yield proc
