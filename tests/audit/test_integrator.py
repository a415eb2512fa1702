"""The Merkle tree grown in bounded batches, and by a hub's background integrator."""

from __future__ import annotations

import logging
import time

import pytest
import sqlalchemy as sa

from civicshare.audit import service as audit
from civicshare.audit.integrator import Integrator
from civicshare.audit.models import AuditEntry
from civicshare.db import Database
from civicshare.hub import Hub
from tests.audit.test_service import memory_tree


def append(database: Database, count: int, tag: str = "t") -> None:
    for i in range(count):
        with database.session() as db:
            audit.record(db, actor=None, action="test.integrate", details={"tag": tag, "i": i})


def sizes(database: Database) -> tuple[int, int]:
    """(appended, integrated), from a committed snapshot."""
    with database.read_session() as db:
        return audit.appended_size(db), audit.integrated_size(db)


def wait_until(condition: object, what: str, timeout: float = 60) -> None:
    """Polls ``condition()`` (a bound on waiting for background work, not a timing target)."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what} after {timeout} s"
        time.sleep(0.02)


def test_integrating_in_limited_batches_gives_the_tree_at_every_size(hub: Hub) -> None:
    with hub.db.read_session() as db:
        start = audit.integrated_size(db)
    append(hub.db, 37)
    appended, _ = sizes(hub.db)
    expected = memory_tree(hub)
    done = start
    while done < appended:
        with hub.db.session() as db:
            size = audit.integrate(db, limit=5)
        assert size == min(done + 5, appended)  # never more than the limit, never less
        done = size
        with hub.db.read_session() as db:
            assert audit.root_at(db, size) == expected.root(size)
    assert sizes(hub.db) == (appended, appended)


def test_integrator_keeps_the_tree_caught_up_in_the_background(hub: Hub) -> None:
    integrator = Integrator(hub.db, interval=0.02, batch=7).start()
    try:
        append(hub.db, 30, "first")
        wait_until(lambda: sizes(hub.db)[1] == sizes(hub.db)[0], "the first burst")
        append(hub.db, 12, "second")
        wait_until(lambda: sizes(hub.db)[1] == sizes(hub.db)[0], "the second burst")
    finally:
        integrator.stop()
    assert not integrator.thread.is_alive()
    appended, integrated = sizes(hub.db)
    assert integrated == appended
    with hub.db.read_session() as db:
        assert audit.root_at(db, appended) == memory_tree(hub).root()
    # Signing after it has caught up integrates nothing more and signs the same root.
    with hub.db.session() as db:
        signed = audit.checkpoint(db, hub)
    assert (signed.size, signed.root_hash) == (appended, memory_tree(hub).root())


def test_integrator_outlives_a_damaged_log_and_stops_on_request(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    append(hub.db, 6)
    appended, integrated = sizes(hub.db)
    with hub.db.session() as db:
        db.execute(sa.delete(AuditEntry).where(AuditEntry.index == integrated + 2))
    caplog.set_level(logging.ERROR, logger="civicshare.audit")
    integrator = Integrator(hub.db, interval=0.02).start()
    try:
        wait_until(lambda: "audit log damaged" in caplog.text, "the damage to be reported")
        assert integrator.thread.is_alive()  # a failed pass does not end the thread
    finally:
        integrator.stop()
    assert not integrator.thread.is_alive()
    # Nothing past the gap was integrated, and the failed transactions left no partial tree.
    assert sizes(hub.db) == (appended, integrated)


def test_integrator_needs_a_positive_interval_and_batch(hub: Hub) -> None:
    for interval, batch in ((0, 10), (-1, 10), (1, 0)):
        with pytest.raises(ValueError, match="positive"):
            Integrator(hub.db, interval=interval, batch=batch)
