"""Helpers for tests about what waits for what: a write held open by another thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from civicshare.db import Database

Result = TypeVar("Result")


@contextmanager
def write_held(database: Database, work: Callable[[Session], Any]) -> Iterator[None]:
    """While the block runs, another thread holds a write transaction after doing ``work``
    (on SQLite: the write turn; on PostgreSQL: the row locks ``work`` took)."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with database.session() as db:
            work(db)
            holding.set()
            release.wait(60)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(30), "the writer did not start"
        yield
    finally:
        release.set()
        thread.join(60)


def finishes_within(seconds: float, call: Callable[[], Result]) -> Result:
    """``call()``'s result, run in a thread; fails if it has not returned within ``seconds``
    (a bound on waiting for a lock, not a performance assertion)."""
    results: list[Result] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(call())
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    if errors:
        raise errors[0]
    return results[0]
