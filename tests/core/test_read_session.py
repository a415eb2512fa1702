"""Read-only units of work: a consistent snapshot that never queues behind writers."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from civicshare.db import Database
from tests.support.concurrency import finishes_within, write_held


@pytest.fixture
def database(database_url: str) -> Database:
    database = Database(database_url)
    with database.session() as db:
        db.execute(sa.text("CREATE TABLE reading (n INTEGER NOT NULL)"))
        db.execute(sa.text("INSERT INTO reading VALUES (1)"))
    yield database
    with database.session() as db:
        db.execute(sa.text("DROP TABLE reading"))
    database.dispose()


def _value(database: Database) -> int:
    with database.read_session() as db:
        return int(db.execute(sa.text("SELECT n FROM reading")).scalar_one())


def test_a_reader_sees_what_was_committed_and_not_what_is_pending(database: Database) -> None:
    with database.session() as db:
        db.execute(sa.text("UPDATE reading SET n = 2"))
    assert _value(database) == 2
    # The writer holds the write turn (SQLite) or the row lock (PostgreSQL); a reader answers
    # at once with the last committed value.
    with write_held(database, lambda db: db.execute(sa.text("UPDATE reading SET n = 3"))):
        assert finishes_within(10, lambda: _value(database)) == 2
    assert _value(database) == 3


def test_writing_in_a_read_session_fails_and_changes_nothing(database: Database) -> None:
    with pytest.raises(DBAPIError), database.read_session() as db:
        db.execute(sa.text("UPDATE reading SET n = 99"))
    assert _value(database) == 1
