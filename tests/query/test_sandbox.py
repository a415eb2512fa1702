"""The sandbox's deadline watchdog: runaway queries stop, finished ones are left alone."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from civicshare.query.sandbox import QueryResourceExceeded, QueryTimeout, Sandbox

RUNAWAY = (
    "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r, src"
)
SOURCES = {"src": pa.table({"x": [1, 2, 3]})}


def test_a_finished_query_is_not_interrupted_after_its_deadline() -> None:
    box = Sandbox()
    first = box.fetch("SELECT sum(x) AS s FROM src", SOURCES, max_rows=10, timeout=0.2)
    assert first.table.column("s").to_pylist() == [6]
    time.sleep(0.4)  # past the first query's deadline
    later = box.fetch(
        "SELECT count(*) AS n FROM range(3000000) t(i), src", SOURCES, max_rows=10, timeout=30
    )
    assert later.table.column("n").to_pylist() == [9_000_000]


def test_each_runaway_query_stops_at_its_own_deadline() -> None:
    box = Sandbox()
    errors: dict[str, BaseException] = {}

    def run(label: str, timeout: float) -> None:
        try:
            box.fetch(RUNAWAY, SOURCES, max_rows=10, timeout=timeout)
        except QueryTimeout as exc:
            errors[label] = exc

    workers = [threading.Thread(target=run, args=(f"q{i}", 0.3 + i * 0.3)) for i in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(errors) == ["q0", "q1", "q2"]
    assert errors["q2"].details == {"timeout_seconds": pytest.approx(0.9)}


def test_a_query_beyond_the_memory_limit_spills_nothing_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An in-memory DuckDB offloads to ``.tmp`` in the working folder once past its memory limit:
    # the rows of a policy view (decrypted personal data) ended up there in the clear.
    monkeypatch.chdir(tmp_path)
    rows = 2_000_000
    names = pa.array([f"Resident {(i * 7919) % rows:09d}" for i in range(rows)])
    box = Sandbox(memory_limit="64MB", threads=1)
    with pytest.raises(QueryResourceExceeded):
        box.fetch(
            "SELECT name FROM src ORDER BY name", {"src": pa.table({"name": names})}, max_rows=10
        )
    assert list(tmp_path.iterdir()) == []
