"""Encrypted segment storage against plain Parquet: the cost of chunked AES-256-GCM.

Writes the same 9-column table (ids, names, dates, ZIP, category, integers) as zstd Parquet
(a) through civicshare's encrypting segment writer to a local folder and (b) with
``pyarrow.parquet.write_table`` to a plain file, then reads both back in full. Prints times and
the ratios civicshare / plain. Usage: ``python -m bench storage [--rows N] [--repeat K]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from civicshare.storage.segments import SegmentStore, read_segments, write_segments


def sample_table(rows: int) -> pa.Table:
    ids = pa.array(range(rows), pa.int64())
    first = pc.binary_join_element_wise(
        pa.array(["Ana", "Ben", "Chloé", "Dev", "Eli", "Fay", "Gus"] * (rows // 7 + 1))[:rows],
        pc.cast(pc.bit_wise_and(ids, pa.scalar(1023, pa.int64())), pa.string()),
        " ",
    )
    base = dt.date(1940, 1, 1)
    return pa.table(
        {
            "id": ids,
            "name": first,
            "birth_date": pa.array(
                [base + dt.timedelta(days=(i * 37) % 25_000) for i in range(rows)], pa.date32()
            ),
            "visit_date": pa.array(
                [base + dt.timedelta(days=30_000 + i % 2_000) for i in range(rows)], pa.date32()
            ),
            "zip": pc.cast(
                pc.add(pc.bit_wise_and(ids, pa.scalar(255, pa.int64())), 94_000), pa.string()
            ),
            "category": pa.array(["fire", "ems", "police", "housing"] * (rows // 4 + 1))[:rows],
            "count": pc.bit_wise_and(ids, pa.scalar(63, pa.int64())),
            "score": pc.multiply(pc.cast(ids, pa.float64()), 0.5),
            "ward": pc.bit_wise_and(ids, pa.scalar(15, pa.int64())),
        }
    )


def best_of(repeat: int, action: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return min(timings)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench storage")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    table = sample_table(args.rows)
    batches = table.to_batches(max_chunksize=65_536)
    key = os.urandom(32)
    with tempfile.TemporaryDirectory() as folder:
        store = SegmentStore(Path(folder, "store").as_uri())
        plain = Path(folder, "plain.parquet")
        written: list[tuple[str, str]] = []

        def encrypted_write() -> None:
            segments = write_segments(
                store, dataset_id=1, key=key, batches=batches, schema=table.schema
            )
            written[:] = [(s.id, s.path) for s in segments]

        def plain_write() -> None:
            pq.write_table(table, plain, compression="zstd", row_group_size=128 * 1024)

        def encrypted_read() -> None:
            rows = sum(b.num_rows for b in read_segments(store, written, key, table.schema))
            assert rows == args.rows

        def plain_read() -> None:
            assert pq.read_table(plain).num_rows == args.rows

        timings = {
            "write": (best_of(args.repeat, encrypted_write), best_of(args.repeat, plain_write)),
            "read": (best_of(args.repeat, encrypted_read), best_of(args.repeat, plain_read)),
        }
        size = sum(f.size for f in store.list_files("datasets")) / args.repeat
    print(f"rows: {args.rows:,}  columns: {table.num_columns}  encrypted size: {size / 1e6:.1f} MB")
    for name, (ours, reference) in timings.items():
        print(
            f"{name:5}  civicshare {ours:6.3f} s   plain parquet {reference:6.3f} s   "
            f"ratio {ours / reference:4.2f}x"
        )
