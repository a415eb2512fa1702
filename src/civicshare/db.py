"""Metadata store: SQLAlchemy 2 engine, sessions, shared column types and Alembic migrations.

SQLite (one file in the hub home) is the embedded default; PostgreSQL is the production backend.
Transactions are committed at the boundary (request, CLI command, job), never in services.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from civicshare.errors import Conflict

log = logging.getLogger("civicshare.db")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def utc_for_comparison(moment: dt.datetime) -> dt.datetime:
    """``moment`` (aware) in UTC; beyond the years 1..9999 in UTC, the nearest end of that range.

    For bounds of queries: 0001-01-01T00:00+05:00 precedes every stored time, it is no error
    (``astimezone`` raises ``OverflowError`` for it, and the database bind crashed with it).
    """
    if moment.tzinfo is None:
        return moment  # refused where it is bound, as every naive time is
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        ahead = (moment.utcoffset() or dt.timedelta(0)) > dt.timedelta(0)
        return (dt.datetime.min if ahead else dt.datetime.max).replace(tzinfo=dt.UTC)


def flush_or_conflict(db: Session, message: str, *, code: str) -> None:
    """Flush pending rows; a unique or key violation becomes a ``Conflict`` with ``code``.

    The constraint is the arbiter for races between two writers, so checking first is not enough.
    """
    try:
        db.flush()
    except IntegrityError as exc:
        raise Conflict(message, code=code) from exc


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not accepted; use UTC-aware values")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while one writer commits; foreign keys are off by default in SQLite.
    # synchronous=NORMAL in WAL mode: a commit survives a crash (kill -9) of the process, only an
    # OS crash or power loss may lose the last commits.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
    # Overwrite deleted content with zeros, so an erased secret (a destroyed data key) does not
    # linger in free pages of the database file.
    cursor.execute("PRAGMA secure_delete=ON")
    # The write-ahead log is copied into the database file by a background thread
    # (``WalCheckpointer``), outside any writer's turn. A writer still checkpoints as SQLite
    # does by default, but only once the log is this long: copying the few frames the
    # background pass has not done yet, then restarting the log from its beginning.
    cursor.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
    # When the log restarts after a burst, its file is cut back to this size, so it does not
    # keep old page versions (up to 64 MiB of them) lying around until overwritten.
    cursor.execute(f"PRAGMA journal_size_limit={2 * CHECKPOINT_BYTES}")
    cursor.close()


WRITER_CHECKPOINT_PAGES = 16_384  # 64 MiB of 4 KiB pages
CHECKPOINT_INTERVAL = 0.5  # seconds between looks at the log's length
CHECKPOINT_BYTES = 4 * 1024 * 1024  # the background pass copies the log once it is this long


class WalCheckpointer:
    """Copies the WAL of one SQLite file into the database file, in a thread of its own.

    By default SQLite checkpoints inside the COMMIT of whichever writer pushes the log past
    1,000 pages: that writer copies the pages and waits for an ``fsync`` of the database file
    while it still holds the write turn, so every writer of the hub waits too (at sustained
    audit appends, a few milliseconds every couple of hundred commits). A PASSIVE checkpoint
    needs no write lock: here it runs beside the writers, on a connection of its own opened for
    each pass (no file handle is kept between passes), and stops when the database is disposed
    or garbage-collected, or its folder is gone.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"wal-checkpoint:{Path(path).name}", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(CHECKPOINT_INTERVAL):
            try:
                if os.stat(self.path + "-wal").st_size >= CHECKPOINT_BYTES:
                    self.checkpoint()
            except FileNotFoundError:
                if not os.path.exists(os.path.dirname(self.path) or "."):
                    return
            except sqlite3.Error:
                continue  # busy with another checkpointer: the next pass catches up

    def checkpoint(self) -> None:
        connection = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not threading.current_thread():
            self.thread.join(5)


BUSY_TIMEOUT = 30.0  # seconds a transaction waits for the write lock before failing


class WriterQueue:
    """Writers of one SQLite file queue here before ``BEGIN IMMEDIATE``, instead of in SQLite.

    SQLite's busy handler makes a writer that finds the database locked sleep (1 ms, 2 ms, 5 ms,
    ... up to 100 ms) and retry, so under contention most of the time goes to sleeping while
    the lock is free. Here a writer blocks until the previous one commits and is woken at once:
    threads of this process on a lock (with the same timeout as SQLite's), processes on an
    ``flock`` of a side file, which the kernel releases if the holder dies (kill -9). SQLite's
    own lock stays the arbiter (BEGIN IMMEDIATE still takes it): this only orders the queue, and
    other programs that open the database without it fall back to the busy timeout.
    """

    def __init__(self, path: str) -> None:
        self.path = path + "-writers"
        self.lock = threading.Lock()
        self.fd = -1

    def acquire(self) -> None:
        if not self.lock.acquire(timeout=BUSY_TIMEOUT):
            raise sqlite3.OperationalError("database is locked (no turn to write within timeout)")
        try:
            if self.fd < 0:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            # Blocks only while another process holds a write transaction, which ends within
            # that process's own busy timeout or when it dies.
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.lock.release()
            raise

    def release(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.lock.release()


_queues: dict[tuple[int, str], WriterQueue] = {}
_queues_lock = threading.Lock()


def writer_queue(path: str) -> WriterQueue:
    """One queue per database file and process (a forked child gets its own)."""
    key = (os.getpid(), os.path.realpath(path))
    with _queues_lock:
        queue = _queues.get(key)
        if queue is None:
            queue = _queues[key] = WriterQueue(key[1])
        return queue


class QueuedConnection(sqlite3.Connection):
    """A pysqlite connection whose transactions take their turn in the file's ``WriterQueue``.

    Every transaction the engine opens is a write transaction (``BEGIN IMMEDIATE``), so the turn
    is taken at begin and given back once COMMIT or ROLLBACK has run (or the connection closes).
    """

    queue: WriterQueue | None = None
    holding = False

    def begin_immediate(self) -> None:
        if self.queue is None:
            self.execute("BEGIN IMMEDIATE")
            return
        self.queue.acquire()
        self.holding = True
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._give_back()
            raise

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self._give_back()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            if not self.in_transaction:
                self._give_back()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._give_back()

    def _give_back(self) -> None:
        if self.holding and self.queue is not None:
            self.holding = False
            self.queue.release()


def _queue_writers(path: str) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        _configure_sqlite(dbapi_connection, _record)
        if isinstance(dbapi_connection, QueuedConnection):
            dbapi_connection.queue = writer_queue(path)

    return on_connect


def _begin_immediate(conn: Any) -> None:
    # Take the write lock at BEGIN, so two writers queue instead of failing on upgrade. Issued
    # on the driver connection: the engine's statement machinery costs more than the BEGIN.
    dbapi_connection = conn.connection.driver_connection
    if not isinstance(dbapi_connection, QueuedConnection):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    try:
        dbapi_connection.begin_immediate()
    except sqlite3.Error as exc:
        # Callers see the same exception as from any statement: SQLAlchemy's wrapper of it.
        raise DBAPIError.instance("BEGIN IMMEDIATE", None, exc, sqlite3.Error) from exc


def _begin_deferred(conn: Any) -> None:
    # A reader's snapshot starts at its first read (WAL): no write lock, no turn in the queue.
    conn.exec_driver_sql("BEGIN")


def _configure_sqlite_reader(dbapi_connection: Any, record: Any) -> None:
    _configure_sqlite(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    # A read session that tried to write would fail here instead of taking the write lock.
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def make_read_engine(url: str, writer: Engine) -> Engine | None:
    """An engine for read-only units of work, or None when the writer's must serve (in-memory).

    SQLite: its own small pool of plain connections beginning deferred transactions, so readers
    see the last committed state (WAL) without queueing behind writers. PostgreSQL: the writer's
    pool with read-only transactions.
    """
    if make_url(url).get_backend_name() != "sqlite":
        return writer.execution_options(postgresql_readonly=True)
    if sqlite_file(url) is None:
        return None
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT, "isolation_level": None},
    )
    event.listen(engine, "connect", _configure_sqlite_reader)
    event.listen(engine, "begin", _begin_deferred)
    return engine


def sqlite_file(url: str) -> str | None:
    """The database file of an SQLite URL; None for other backends and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return str(parsed.database)


def make_engine(url: str) -> Engine:
    """Create an engine with the pragmas and pool settings each backend needs."""
    if make_url(url).get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None stops pysqlite from issuing its own BEGINs; we issue ours.
        connect_args: dict[str, Any] = {
            "check_same_thread": False,
            "timeout": BUSY_TIMEOUT,
            "isolation_level": None,
        }
        if path is not None:
            connect_args["factory"] = QueuedConnection
        engine = create_engine(url, connect_args=connect_args)
        if path is not None:
            event.listen(engine, "connect", _queue_writers(path))
        else:
            event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """An engine plus its session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_engine = make_read_engine(url, self.engine)
        path = sqlite_file(url)
        self.checkpointer = WalCheckpointer(path) if path is not None else None
        if self.checkpointer is not None:
            weakref.finalize(self, self.checkpointer.stopped.set)
        self.read_sessions = (
            self.sessions
            if self.read_engine is None
            else sessionmaker(self.read_engine, expire_on_commit=False, autoflush=False)
        )

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits if the block succeeds, rolls back if it raises."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A read-only unit of work on one consistent snapshot, never committed.

        For reads that must not wait for writers (proofs, keys): on SQLite every ``session``
        takes the write turn at its first statement, this one never does. Writing in it fails.
        Closing the session ends its transaction and leaves what it loaded readable (detached,
        not expired), so callers may use those objects after the block.
        """
        with self.read_sessions() as session:
            yield session

    def flush_erased_pages(self) -> None:
        """SQLite: fold the write-ahead log into the database and truncate it.

        Called after erasing a secret, so the page versions that held it leave the WAL file too.
        PostgreSQL keeps old row versions until VACUUM; nothing to do here.
        """
        if self.backend != "sqlite":
            return
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            deadline = time.monotonic() + BUSY_TIMEOUT
            # Busy while another connection (the background checkpointer, another process)
            # runs a checkpoint: SQLite does not wait for that, so this does.
            while cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                if time.monotonic() > deadline:
                    log.warning("could not truncate the write-ahead log: still busy")
                    break
                time.sleep(0.01)
            cursor.close()
        finally:
            connection.close()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def upgrade(self) -> None:
        upgrade_database(self.engine)

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        if self.read_engine is not None and self.read_engine is not self.engine:
            self.read_engine.dispose()
        self.engine.dispose()


# Objects that exist on one backend only and that the ORM metadata cannot describe (the catalog's
# SQLite FTS5 index with its shadow tables, its PostgreSQL GIN index): schema comparison
# (autogenerate, the migration tests) must neither report nor drop them.
UNMANAGED_PREFIXES = ("dataset_fts", "ix_dataset_search")


def include_name(name: str | None, type_: str, _parent_names: object) -> bool:
    return not (type_ in {"table", "index"} and (name or "").startswith(UNMANAGED_PREFIXES))


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic configuration pointing at the migrations shipped inside the package."""
    location = resources.files("civicshare") / "migrations"
    config = Config()
    config.set_main_option("script_location", str(location))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade_database(engine: Engine, revision: str = "heads") -> None:
    """Apply every migration up to ``revision`` (idempotent).

    Each domain keeps its own branch of migrations (``branch_labels``) rooted at the foundation,
    with ``depends_on`` where its tables refer to another domain's; ``heads`` applies them all.
    """
    command.upgrade(alembic_config(engine), revision)


def current_revisions(engine: Engine) -> tuple[str, ...]:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))
