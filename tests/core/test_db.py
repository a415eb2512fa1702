"""SQLite writers of one database file take turns in the hub's writer queue, not in SQLite."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
import time
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


def _file_holds(path: Path, marker: bytes) -> bool:
    return path.exists() and marker in path.read_bytes()


def test_the_write_ahead_log_is_copied_into_the_database_beside_the_writers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers no longer checkpoint at 1,000 pages inside their commit; a background thread
    copies the log into the database file once it is long enough, and stops on dispose."""
    monkeypatch.setattr(dbmod, "CHECKPOINT_INTERVAL", 0.05)
    monkeypatch.setattr(dbmod, "CHECKPOINT_BYTES", 1024 * 1024)
    path = tmp_path / "wal.db"
    database = Database(f"sqlite:///{path}")
    assert database.checkpointer is not None
    assert database.checkpointer.thread.is_alive()
    marker = b"marker-3f6b2d"
    with database.session() as db:
        db.execute(sa.text("CREATE TABLE t (v BLOB)"))
        db.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": marker})
    # A short log stays a log: neither the writer nor the background pass copies it yet.
    time.sleep(0.5)
    assert _file_holds(Path(f"{path}-wal"), marker)
    assert not _file_holds(path, marker)
    # More than 1,000 pages (SQLite's own threshold) past it, and the writer still did not.
    for _ in range(1100):
        with database.session() as db:
            db.execute(sa.text("INSERT INTO t VALUES (randomblob(3000))"))
    deadline = time.monotonic() + 30
    while not _file_holds(path, marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _file_holds(path, marker)
    with database.session() as db:
        assert db.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 1101
    database.dispose()
    assert not database.checkpointer.thread.is_alive()


def test_erasing_truncates_the_log_once_a_reader_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "erase.db"
    database = Database(f"sqlite:///{path}")
    with database.session() as db:
        db.execute(sa.text("CREATE TABLE t (v BLOB)"))
        db.execute(sa.text("INSERT INTO t VALUES (randomblob(100000))"))
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN")
    other.execute("SELECT count(*) FROM t").fetchone()  # a reader holds the log for a moment
    threading.Timer(0.3, other.rollback).start()
    database.flush_erased_pages()
    other.close()
    assert os.path.getsize(f"{path}-wal") == 0
    database.dispose()


def test_erasing_waits_for_a_checkpoint_running_elsewhere(tmp_path: Path) -> None:
    """SQLite answers 'busy' at once, without waiting, while another connection checkpoints."""
    path = tmp_path / "busy.db"
    database = Database(f"sqlite:///{path}")
    assert database.checkpointer is not None
    database.checkpointer.stop()  # this test runs the other checkpoint itself
    database.ping()  # the file is created in WAL mode
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint=0")  # a long log, for a long checkpoint
    writer.execute("CREATE TABLE t (v BLOB)")
    writer.execute("BEGIN")
    for _ in range(60):
        writer.execute("INSERT INTO t VALUES (randomblob(4000000))")
    writer.execute("COMMIT")
    writer.close()
    running = threading.Event()

    def checkpoint_elsewhere() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        running.set()
        other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        other.close()

    thread = threading.Thread(target=checkpoint_elsewhere)
    thread.start()
    running.wait(10)
    time.sleep(0.01)
    database.flush_erased_pages()
    thread.join(60)
    assert os.path.getsize(f"{path}-wal") == 0
    database.dispose()
