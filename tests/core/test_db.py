"""SQLite writers of one database file take turns in the hub's writer queue, not in SQLite."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from civicshare import db as dbmod
from civicshare.db import Database


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    database = Database(url)
    with database.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        conn.execute(sa.text("INSERT INTO counter VALUES (0)"))
    database.dispose()
    return url


def _increment(database: Database) -> None:
    with database.session() as db:
        value = db.execute(sa.text("SELECT n FROM counter")).scalar_one()
        db.execute(sa.text("UPDATE counter SET n = :n"), {"n": value + 1})


def _count(url: str) -> int:
    database = Database(url)
    with database.session() as db:
        value = int(db.execute(sa.text("SELECT n FROM counter")).scalar_one())
    database.dispose()
    return value


def test_threads_of_two_engines_take_turns_without_lost_updates(url: str) -> None:
    engines = [Database(url), Database(url)]
    threads = [
        threading.Thread(target=lambda d=d: [_increment(d) for _ in range(100)])
        for d in engines * 3
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _count(url) == 600
    for database in engines:
        database.dispose()


def test_a_writer_waiting_too_long_fails_like_a_busy_sqlite(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT", 0.2)
    holder, waiter = Database(url), Database(url)
    with holder.session() as db:
        db.execute(sa.text("UPDATE counter SET n = 1"))
        with pytest.raises(OperationalError, match="locked"):
            _increment(waiter)
    _increment(waiter)  # the turn is free again once the holder committed
    assert _count(url) == 2
    holder.dispose()
    waiter.dispose()


def _write_then_hang(url: str, report: multiprocessing.Queue[str]) -> None:
    database = Database(url)
    with database.session() as db:
        db.execute(sa.text("UPDATE counter SET n = 100"))
        report.put("holding")
        threading.Event().wait()  # killed here, with its write turn and transaction open


def test_a_killed_process_gives_its_turn_back(url: str) -> None:
    context = multiprocessing.get_context("spawn")
    report: multiprocessing.Queue[str] = context.Queue()
    worker = context.Process(target=_write_then_hang, args=(url, report))
    worker.start()
    assert report.get(timeout=120) == "holding"
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(60)
    database = Database(url)
    _increment(database)
    database.dispose()
    assert _count(url) == 1  # the killed transaction left nothing behind
