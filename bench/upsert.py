"""Upsert of a large file into a stored version vs DuckDB doing the same merge, same run.

    python -m bench upsert [--rows 1000000] [--big-rows 5000000] [--repeat 3] [--skip-big]

For N rows: the ingest benchmark's N-row CSV (bench/.data/people-N.csv) is stored as version 1
of a dataset in a prepared hub; the upsert file is the same generator shifted by N/2 ids, so
half of its rows replace stored rows and half are new. Each run copies the prepared hub and
upserts in a fresh process, so peak RSS is the upsert's own. Reference: DuckDB writing the same
merge (stored rows without the incoming keys, then the incoming rows) from a plain Parquet copy
of the stored rows and the CSV to Parquet. The upsert keeps only the incoming keys in memory and
spills the incoming rows, sealed, to disk; peak RSS is reported for N and --big-rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ingest import (
    DATA,
    child_result,
    cpu_seconds,
    generate,
    ingest_into,
    new_bench_hub,
    peak_rss_mb,
)


def shifted(rows: int) -> Path:
    """The upsert file: ids N/2 .. 3N/2 (half stored already), values from the same generator."""
    import duckdb

    path = DATA / f"people-{rows}-upsert.csv"
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    source = generate(rows)
    duckdb.sql("SET enable_progress_bar=false")
    duckdb.sql(
        f"""COPY (SELECT CAST(person_id AS BIGINT) + {rows // 2} AS person_id,
                         * EXCLUDE (person_id)
                  FROM read_csv('{source}', all_varchar = true))
            TO '{partial}' (FORMAT csv, HEADER)"""
    )
    partial.rename(path)
    return path


def child_prepare(home: Path, source: Path) -> dict[str, Any]:
    """A hub whose dataset bench.people holds ``source`` as version 1."""
    hub = new_bench_hub(home)
    report = ingest_into(hub, source)
    hub.close()
    return {"rows": report.rows_accepted}


def child_upsert(home: Path, source: Path) -> dict[str, Any]:
    from civicshare.config import Settings
    from civicshare.hub import init_home

    hub, _ = init_home(Settings(home=home))  # opens the prepared home (creates nothing new)
    started, cpu = time.perf_counter(), cpu_seconds()
    report = ingest_into(hub, source, mode="upsert")
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    hub.close()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "status": report.status,
        "rejected": report.rows_rejected,
        "replaced": report.details.get("rows_replaced"),
        "kept": report.details.get("rows_kept"),
        "peak_rss_mb": peak_rss_mb(),
    }


def child_duckdb(stored: Path, source: Path) -> dict[str, Any]:
    import duckdb

    with tempfile.TemporaryDirectory(prefix="bench-duckdb-") as folder:
        started, cpu = time.perf_counter(), cpu_seconds()
        duckdb.sql(
            f"""COPY (
                SELECT s.* FROM read_parquet('{stored}') AS s
                    ANTI JOIN read_csv('{source}') AS i USING (person_id)
                UNION ALL SELECT * FROM read_csv('{source}')
            ) TO '{folder}/out.parquet' (FORMAT parquet)"""
        )
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": peak_rss_mb()}


def run_child(*args: str) -> dict[str, Any]:
    return child_result("bench.upsert", *args)


def measure(rows: int, repeat: int, work: Path) -> list[dict[str, Any]]:
    """``repeat`` upserts of the shifted file into copies of one prepared hub, with references."""
    import duckdb

    stored, incoming = generate(rows), shifted(rows)
    prepared = work / f"prepared-{rows}"
    run_child("prepare", str(prepared), str(stored))
    plain = work / f"stored-{rows}.parquet"
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{stored}')) TO '{plain}' (FORMAT parquet)")
    runs = []
    for attempt in range(repeat):
        home = work / f"run-{rows}-{attempt}"
        shutil.copytree(prepared, home)
        ours = run_child("upsert", str(home), str(incoming))
        shutil.rmtree(home)
        duck = run_child("duckdb", str(plain), str(incoming))
        assert (ours["replaced"], ours["kept"]) == (rows - rows // 2, rows // 2), ours
        ours["duckdb"] = duck
        runs.append(ours)
        print(
            f"{rows:,} rows: civicshare upsert {ours['seconds']:.2f}s, CPU "
            f"{ours['cpu_seconds']:.2f}s, peak RSS {ours['peak_rss_mb']:.0f} MB | duckdb "
            f"{duck['seconds']:.2f}s, CPU {duck['cpu_seconds']:.2f}s, peak RSS "
            f"{duck['peak_rss_mb']:.0f} MB | ratio {ours['seconds'] / duck['seconds']:.2f}x",
            flush=True,
        )
    return runs


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench upsert")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *paths = args.child
        if kind == "prepare":
            result = child_prepare(Path(paths[0]), Path(paths[1]))
        elif kind == "upsert":
            result = child_upsert(Path(paths[0]), Path(paths[1]))
        else:
            result = child_duckdb(Path(paths[0]), Path(paths[1]))
        print(json.dumps(result))
        return
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-upsert-") as folder:
        sizes = [args.rows] if args.skip_big else [args.rows, args.big_rows]
        results = {rows: measure(rows, args.repeat, Path(folder)) for rows in sizes}
    for rows, runs in results.items():
        ratios = [run["seconds"] / run["duckdb"]["seconds"] for run in runs]
        peaks = [run["peak_rss_mb"] for run in runs]
        print(
            f"{rows:,} rows: ratio civicshare / duckdb, median of {len(runs)}: "
            f"{statistics.median(ratios):.2f}x wall; peak RSS min {min(peaks):.0f} / median "
            f"{statistics.median(peaks):.0f} / max {max(peaks):.0f} MB"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
