"""In-memory Parquet parts and the bounded cache."""

from __future__ import annotations

import json
import threading

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from civicshare.sharing.materialize import Materialized, ParquetCache, materialize


def numbers(rows: int) -> pa.Table:
    return pa.table({"n": pa.array(range(rows), pa.int64()), "half": [i / 2 for i in range(rows)]})


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(min_value=0, max_value=300),
    rows_per_file=st.integers(min_value=1, max_value=120),
    batch=st.integers(min_value=1, max_value=90),
)
def test_parts_hold_every_row_once_in_order(rows: int, rows_per_file: int, batch: int) -> None:
    table = numbers(rows)
    content = materialize(
        table.to_batches(max_chunksize=batch),
        table.schema,
        fingerprint="f",
        rows_per_file=rows_per_file,
    )
    assert all(part.rows <= rows_per_file for part in content.parts)
    assert len(content.parts) == -(-rows // rows_per_file)
    read = [pq.read_table(pa.BufferReader(part.data)) for part in content.parts]
    assert [n for t in read for n in t.column("n").to_pylist()] == list(range(rows))
    assert content.rows == rows


def test_file_stats_count_rows_nulls_and_bounds() -> None:
    table = pa.table({"n": [3, None, 9], "s": ["b", "a", None]})
    (part,) = materialize(table.to_batches(), table.schema, fingerprint="f").parts
    stats = json.loads(part.stats)
    assert stats["numRecords"] == 3
    assert stats["nullCount"] == {"n": 1, "s": 1}
    assert (stats["minValues"]["n"], stats["maxValues"]["n"]) == (3, 9)
    assert "s" not in stats["minValues"]


def test_encoding_is_deterministic() -> None:
    table = numbers(1000)
    first = materialize(table.to_batches(), table.schema, fingerprint="f", rows_per_file=300)
    again = materialize(
        table.to_batches(max_chunksize=7), table.schema, fingerprint="f", rows_per_file=300
    )
    assert [p.data for p in first.parts] == [p.data for p in again.parts]


def content(name: str, size: int) -> Materialized:
    table = pa.table({"b": [b"x" * size]})
    return materialize(table.to_batches(), table.schema, fingerprint=name)


def test_cache_stays_within_its_budget_evicting_the_least_recently_used() -> None:
    a, b, c = content("a", 4000), content("b", 4000), content("c", 4000)
    cache = ParquetCache(max_bytes=a.nbytes + b.nbytes + 10)
    cache.get_or_build("a", lambda: a)
    cache.get_or_build("b", lambda: b)
    assert cache.get("a") is a  # now "b" is the least recently used
    cache.get_or_build("c", lambda: c)
    assert cache.get("b") is None
    assert cache.get("a") is a
    assert cache.get("c") is c
    assert cache.nbytes <= cache.max_bytes


def test_content_larger_than_the_budget_is_served_but_not_kept() -> None:
    big = content("big", 10_000)
    cache = ParquetCache(max_bytes=100)
    assert cache.get_or_build("big", lambda: big) is big
    assert cache.get("big") is None


def test_concurrent_requests_build_once() -> None:
    cache = ParquetCache()
    builds = []
    gate = threading.Event()

    def build() -> Materialized:
        builds.append(1)
        gate.wait(5)
        return content("k", 10)

    threads = [threading.Thread(target=cache.get_or_build, args=("k", build)) for _ in range(4)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    assert builds == [1]
