"""Shared content as in-memory Parquet files, and the bounded cache that keeps them.

A recipient never receives stored segments: the policy view's rows are cast to Spark types and
encoded as Parquet **in memory** (plaintext never touches disk), split into parts so one file
stays a manageable size. Built files are cached under the content's policy fingerprint, so the
many range requests of one download share one encoding; the cache evicts least recently used
entries beyond its byte budget.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from civicshare.sharing.spark import spark_compatible

DEFAULT_ROWS_PER_FILE = 1 << 20
DEFAULT_CACHE_BYTES = 2 << 30


@dataclass(frozen=True)
class ParquetPart:
    data: bytes
    rows: int
    stats: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Materialized:
    """The files of one piece of shared content (a snapshot or one version's changes)."""

    fingerprint: str
    schema: pa.Schema
    parts: tuple[ParquetPart, ...]

    @property
    def nbytes(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def rows(self) -> int:
        return sum(part.rows for part in self.parts)


def materialize(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    *,
    fingerprint: str,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
) -> Materialized:
    """Encode ``batches`` as Parquet parts of at most ``rows_per_file`` rows each."""
    target = spark_compatible(schema)
    parts = [
        _encode(chunk, target)
        for chunk in _chunks((_cast(batch, target) for batch in batches), rows_per_file)
    ]
    return Materialized(fingerprint=fingerprint, schema=target, parts=tuple(parts))


def served_table(table: pa.Table) -> pa.Table:
    """``table`` cast to the Spark-compatible types it is served as."""
    target = spark_compatible(table.schema)
    return pa.Table.from_batches([_cast(batch, target) for batch in table.to_batches()], target)


def _cast(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    if batch.schema.equals(target):
        return batch
    columns = [
        _cast_column(batch.column(i), target.field(i).type) for i in range(batch.num_columns)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=target)


def _cast_column(column: pa.Array, target: pa.DataType) -> pa.Array:
    if column.type == target:
        return column
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_timestamp(column.type) and column.type.tz is None:
        column = pc.assume_timezone(column, "UTC")
    if pa.types.is_time(column.type) or pa.types.is_null(column.type):
        return column.cast(pa.string())
    if pa.types.is_duration(column.type):
        return column.view(pa.int64())
    return column.cast(target)


def _chunks(
    batches: Iterable[pa.RecordBatch], rows_per_file: int
) -> Iterator[list[pa.RecordBatch]]:
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        while batch.num_rows:
            take = min(batch.num_rows, rows_per_file - count)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == rows_per_file:
                yield pending
                pending, count = [], 0
    if count:
        yield pending


def _encode(batches: list[pa.RecordBatch], schema: pa.Schema) -> ParquetPart:
    table = pa.Table.from_batches(batches, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=len(table) or None, compression="snappy")
    return ParquetPart(data=sink.getvalue().to_pybytes(), rows=len(table), stats=_stats(table))


def _stats(table: pa.Table) -> str:
    """Delta per-file statistics: row count, null counts, and min/max of orderable columns."""
    stats: dict[str, Any] = {"numRecords": len(table), "minValues": {}, "maxValues": {}}
    null_count: dict[str, int] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        null_count[name] = column.null_count
        if len(table) == column.null_count or not _orderable(column.type):
            continue
        bounds = pc.min_max(column)
        stats["minValues"][name] = _json_value(bounds["min"].as_py())
        stats["maxValues"][name] = _json_value(bounds["max"].as_py())
    stats["nullCount"] = null_count
    return json.dumps(stats, separators=(",", ":"))


def _orderable(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(data_type)
        or pa.types.is_floating(data_type)
        or pa.types.is_date(data_type)
        or pa.types.is_timestamp(data_type)
        or pa.types.is_decimal(data_type)
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN has no JSON form
        return None
    if not isinstance(value, int | float | str | bool | None):
        return str(value)
    return value


@dataclass
class ParquetCache:
    """Least-recently-used cache of materialised content, bounded in bytes."""

    max_bytes: int = DEFAULT_CACHE_BYTES
    _entries: OrderedDict[str, Materialized] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _building: dict[str, threading.Lock] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(entry.nbytes for entry in self._entries.values())

    def get(self, fingerprint: str) -> Materialized | None:
        with self._lock:
            entry = self._entries.get(fingerprint)
            if entry is not None:
                self._entries.move_to_end(fingerprint)
            return entry

    def get_or_build(self, fingerprint: str, build: Callable[[], Materialized]) -> Materialized:
        """The cached content, or ``build()`` it once (concurrent callers wait for that build)."""
        cached = self.get(fingerprint)
        if cached is not None:
            return cached
        with self._lock:
            building = self._building.setdefault(fingerprint, threading.Lock())
        with building:
            cached = self.get(fingerprint)
            if cached is not None:
                return cached
            built = build()
            self._put(built)
        with self._lock:
            self._building.pop(fingerprint, None)
        return built

    def _put(self, entry: Materialized) -> None:
        if entry.nbytes > self.max_bytes:
            return  # larger than the whole budget: served from this build only
        with self._lock:
            self._entries[entry.fingerprint] = entry
            self._entries.move_to_end(entry.fingerprint)
            total = sum(item.nbytes for item in self._entries.values())
            while total > self.max_bytes and len(self._entries) > 1:
                _key, evicted = self._entries.popitem(last=False)
                total -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
