"""Validated ingest vs DuckDB's CSV→Parquet copy and vs `frictionless validate`, same run.

    python -m bench ingest [--rows 1000000] [--big-rows 10000000] [--repeat 3]
                           [--big-repeat 3] [--skip-frictionless] [--skip-big]

Generates a 9-column CSV (ids, names, dates, ZIP, category, integers) into bench/.data/, then
times, each in a fresh process so peak RSS is the process's own:
  * civicshare: ingest_file into a new encrypted version (validation of every rule in the schema,
    standardisation, Parquet + AES-256-GCM segments, metadata commit);
  * DuckDB: COPY (SELECT * FROM read_csv(...)) TO ... (FORMAT parquet);
  * frictionless validate with the same Table Schema.
Peak RSS of the civicshare ingest is measured for --rows and --big-rows files. It is the highest
point of a process whose memory swings around a plateau, so one run says little: it is reported
as min / median / max over the --repeat runs of the small file and --big-repeat runs of the big.
Whether memory grows with the file is measured directly as well: the parent samples each big
run's resident memory from /proc every few milliseconds and fits a line through the plateau
(the ingest's middle, past the allocator's warm-up and before the final drain), reported in MB
per million rows, with the mean of the plateau's first and last fifths.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / ".data"
SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "person_id", "type": "integer", "constraints": {"required": True}},
        {"name": "first_name", "type": "string", "classification": "personal", "pii": "name"},
        {"name": "last_name", "type": "string", "classification": "personal", "pii": "name"},
        {
            "name": "birth_date",
            "type": "date",
            "format": "%m/%d/%Y",
            "classification": "personal",
            "pii": "dob",
        },
        {"name": "visit_date", "type": "date"},
        {"name": "zip", "type": "string", "constraints": {"pattern": "[0-9]{5}"}},
        {
            "name": "category",
            "type": "string",
            "constraints": {
                "enum": [
                    "housing",
                    "public-health",
                    "transportation",
                    "police",
                    "fire-rescue",
                    "parks-recreation",
                    "water-utilities",
                    "other",
                ]
            },
        },
        {"name": "visits", "type": "integer", "constraints": {"minimum": 0}},
        {"name": "amount", "type": "integer", "constraints": {"minimum": 0, "maximum": 1000000000}},
    ],
    "primaryKey": ["person_id"],
}
FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Margaret",
    "Dennis",
    "Radia",
    "Tim",
    "Katherine",
    "John",
    "Sophie",
    "Niklaus",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Hamilton",
    "Ritchie",
    "Perlman",
    "Berners-Lee",
    "Johnson",
    "McCarthy",
    "Wilson",
]


def generate(rows: int) -> Path:
    """The benchmark CSV (deterministic; reused if already there)."""
    import duckdb

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"people-{rows}.csv"
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    duckdb.sql("SET enable_progress_bar=false")
    duckdb.sql(
        f"""COPY (
            SELECT i AS person_id,
                   {FIRST!r}[1 + i % {len(FIRST)}] AS first_name,
                   {LAST!r}[1 + (i // 7) % {len(LAST)}] AS last_name,
                   strftime(DATE '1940-01-01' + INTERVAL (i * 37 % 25000) DAY, '%m/%d/%Y')
                       AS birth_date,
                   strftime(DATE '2020-01-01' + INTERVAL (i % 1800) DAY, '%Y-%m-%d')
                       AS visit_date,
                   lpad(CAST(1000 + i * 13 % 98000 AS VARCHAR), 5, '0') AS zip,
                   ['housing','public-health','transportation','police','fire-rescue',
                    'parks-recreation','water-utilities','other'][1 + i % 8] AS category,
                   i % 997 AS visits,
                   i * 7919 % 1000000000 AS amount
            FROM range({rows}) AS t(i)
        ) TO '{partial}' (FORMAT csv, HEADER)"""
    )
    partial.rename(path)
    return path


def peak_rss_mb() -> float:
    """This process's own peak resident memory, in MB.

    Not ``ru_maxrss``: on Linux a child started by ``subprocess`` inherits its parent's peak in
    that figure (the exec'd process reports at least what the parent ever held; measured: a
    parent that once held 600 MB makes every later child report 613 MB). The benchmark's
    parent generates the CSVs with DuckDB, so the children would report its peak, not theirs.
    ``VmHWM`` is the high-water mark of the process's own address space, new at exec.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def new_bench_hub(home: Path) -> Any:
    """A hub in ``home`` with agency ``bench`` and its empty dataset ``bench.people``."""
    from civicshare.agency import service as agency_service
    from civicshare.agency.models import AgencyCreate
    from civicshare.catalog import service as catalog
    from civicshare.catalog.models import DatasetCreate
    from civicshare.catalog.tableschema import TableSchema
    from civicshare.config import Settings
    from civicshare.hub import init_home
    from civicshare.permissions import CLI_ADMIN

    hub, _ = init_home(Settings(home=home))
    with hub.db.session() as db:
        agency_service.create_agency(
            db=db, actor=CLI_ADMIN, data=AgencyCreate(slug="bench", title="Bench")
        )
        catalog.create_dataset(
            db=db,
            actor=CLI_ADMIN,
            data=DatasetCreate(
                agency="bench",
                slug="people",
                title="People",
                table_schema=TableSchema.model_validate(SCHEMA),
            ),
        )
    return hub


def ingest_into(hub: Any, path: Path, mode: str = "append") -> Any:
    """``path`` ingested into ``bench.people`` in one unit of work; returns the report."""
    from civicshare.catalog import service as catalog
    from civicshare.ingest import service as ingest
    from civicshare.permissions import CLI_ADMIN

    with hub.db.session() as db:
        dataset = catalog.get_dataset(db=db, ref="bench.people")
        return ingest.ingest_file(
            db=db,
            hub=hub,
            actor=CLI_ADMIN,
            dataset=dataset,
            source=path,
            filename=path.name,
            mode=mode,
        )


def child_civicshare(path: Path) -> dict[str, Any]:
    """One validated ingest into a fresh hub (runs in its own process)."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder:
        hub = new_bench_hub(Path(folder) / "home")
        # time.monotonic is CLOCK_MONOTONIC, the clock of the parent's RSS samples too.
        began, started, cpu = time.monotonic(), time.perf_counter(), cpu_seconds()
        report = ingest_into(hub, path)
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        ended = time.monotonic()
        hub.close()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rows": report.rows_accepted,
        "rejected": report.rows_rejected,
        "peak_rss_mb": peak_rss_mb(),
        "began": began,
        "ended": ended,
    }


def child_duckdb(path: Path) -> dict[str, Any]:
    import duckdb

    with tempfile.TemporaryDirectory(prefix="bench-duckdb-") as folder:
        started, cpu = time.perf_counter(), cpu_seconds()
        duckdb.sql(
            f"COPY (SELECT * FROM read_csv('{path}')) TO '{folder}/out.parquet' (FORMAT parquet)"
        )
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": peak_rss_mb()}


def run_child(kind: str, path: Path) -> dict[str, Any]:
    return child_result("bench.ingest", kind, str(path))


def child_result(module: str, *args: str) -> dict[str, Any]:
    """``python -m MODULE --child ARGS...`` in a fresh process: its last line, as JSON."""
    output = subprocess.run(
        [sys.executable, "-m", module, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def sampled_child(path: Path) -> dict[str, Any]:
    """``run_child("civicshare", path)``, with its resident memory sampled from outside.

    Sampling from this process, not a thread of the child's, leaves the child's GIL and
    allocator alone. Adds ``drift``: see ``plateau_drift``.
    """
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.ingest", "--child", "civicshare", str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    samples: list[tuple[float, float]] = []
    sampler = threading.Thread(target=_sample_rss, args=(child.pid, samples), daemon=True)
    sampler.start()
    output, _ = child.communicate()
    sampler.join()
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, child.args, output)
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    window = [(t, rss) for t, rss in samples if result["began"] <= t <= result["ended"]]
    result["drift"] = plateau_drift(window, result["rows"])
    return result


def _sample_rss(pid: int, samples: list[tuple[float, float]]) -> None:
    page_mb = os.sysconf("SC_PAGE_SIZE") / 1e6
    try:
        with open(f"/proc/{pid}/statm") as statm:
            while True:
                statm.seek(0)
                fields = statm.read().split()
                if len(fields) < 2:  # the process has exited
                    return
                samples.append((time.monotonic(), int(fields[1]) * page_mb))
                time.sleep(RSS_SAMPLE_SECONDS)
    except (OSError, ProcessLookupError):
        return  # the process is gone


RSS_SAMPLE_SECONDS = 0.005
# The plateau: RSS climbs for the first few hundred thousand rows while the allocators warm up
# (measured: ~0.5M rows) and falls as the pipeline drains at the end.
PLATEAU = (0.3, 0.95)


def plateau_drift(samples: list[tuple[float, float]], rows: int) -> dict[str, float] | None:
    """How resident memory moves across the ingest's plateau, from (time, MB) samples.

    ``mb_per_million_rows`` is the slope of a least-squares line (rows assumed to go at an even
    pace); ``first``/``last`` are the mean MB of the plateau's first and last fifths.
    """
    if len(samples) < 50 or rows <= 0:
        return None
    start, end = samples[0][0], samples[-1][0]
    low, high = (start + (end - start) * share for share in PLATEAU)
    plateau = [(t, mb) for t, mb in samples if low <= t <= high]
    if len(plateau) < 50:
        return None
    times = [t for t, _ in plateau]
    values = [mb for _, mb in plateau]
    slope = statistics.linear_regression(times, values).slope  # MB per second
    rows_per_second = rows / (end - start)
    fifth = len(plateau) // 5
    return {
        "mb_per_million_rows": slope / rows_per_second * 1e6,
        "first": statistics.fmean(values[:fifth]),
        "last": statistics.fmean(values[-fifth:]),
        "samples": len(plateau),
    }


def time_frictionless(path: Path) -> float | None:
    executable = Path(sys.executable).with_name("frictionless")
    if not executable.exists():
        print("frictionless is not installed (pip install -e '.[bench]'); skipped")
        return None
    with tempfile.TemporaryDirectory(prefix="bench-fl-") as folder:
        schema_path = Path(folder) / "schema.json"
        plain = {
            "fields": [
                {k: v for k, v in f.items() if k not in ("classification", "pii")}
                for f in SCHEMA["fields"]
            ],
            "primaryKey": SCHEMA["primaryKey"],
        }
        schema_path.write_text(json.dumps(plain))
        started = time.perf_counter()
        # Frictionless only opens paths under its working folder unless told to trust them.
        result = subprocess.run(
            [
                str(executable),
                "validate",
                path.name,
                "--schema",
                str(schema_path),
                "--json",
                "--trusted",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=path.parent,
        )
        seconds = time.perf_counter() - started
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    valid = report.get("valid")
    print(f"frictionless validate: {seconds:.1f}s (valid={valid}, exit {result.returncode})")
    return seconds


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench ingest")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=10_000_000)
    parser.add_argument("--skip-frictionless", action="store_true")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="civicshare/duckdb pairs to run")
    parser.add_argument("--big-repeat", type=int, default=3, help="runs of the --big-rows file")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, file = args.child
        runner = child_civicshare if kind == "civicshare" else child_duckdb
        print(json.dumps(runner(Path(file))))
        return
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    path = generate(args.rows)
    size_mb = path.stat().st_size / 1e6
    print(f"file: {path.name}, {args.rows:,} rows, {size_mb:.1f} MB")
    # On a shared machine one pair of runs can be far off either way: run the pair --repeat
    # times back to back, alternating, and report each pair's ratio and the median.
    pairs = []
    for _ in range(args.repeat):
        pairs.append((run_child("civicshare", path), run_child("duckdb", path)))
    for ours, duck in pairs:
        assert ours["rows"] == args.rows, ours
        print(
            f"civicshare validated ingest: {ours['seconds']:.2f}s "
            f"({args.rows / ours['seconds']:,.0f} rows/s, {size_mb / ours['seconds']:.1f} MB/s), "
            f"CPU {ours['cpu_seconds']:.2f}s, peak RSS {ours['peak_rss_mb']:.0f} MB | "
            f"duckdb: {duck['seconds']:.2f}s, CPU {duck['cpu_seconds']:.2f}s, "
            f"peak RSS {duck['peak_rss_mb']:.0f} MB | "
            f"ratio {ours['seconds'] / duck['seconds']:.2f}x"
        )
    ratios = sorted(o["seconds"] / d["seconds"] for o, d in pairs)
    cpu_ratios = sorted(o["cpu_seconds"] / d["cpu_seconds"] for o, d in pairs)
    print(
        f"ratio civicshare / duckdb, median of {len(pairs)}: {statistics.median(ratios):.2f}x "
        f"wall (target <= 2x), {statistics.median(cpu_ratios):.2f}x CPU time"
    )
    ours = sorted(pairs, key=lambda pair: pair[0]["seconds"])[len(pairs) // 2][0]
    if not args.skip_frictionless:
        frictionless = time_frictionless(path)
        if frictionless:
            speedup = frictionless / ours["seconds"]
            print(f"speed-up over frictionless: {speedup:.1f}x (target >= 20x)")
    if not args.skip_big:
        big = generate(args.big_rows)
        larges = [sampled_child(big) for _ in range(args.big_repeat)]
        for large in larges:
            assert large["rows"] == args.big_rows, large
            print(
                f"civicshare {args.big_rows:,} rows: {large['seconds']:.1f}s, "
                f"CPU {large['cpu_seconds']:.2f}s, peak RSS {large['peak_rss_mb']:.0f} MB, "
                f"{_drift(large['drift'])}"
            )
        small_peaks = [ours["peak_rss_mb"] for ours, _ in pairs]
        big_peaks = [large["peak_rss_mb"] for large in larges]
        print(f"peak RSS, {args.rows:,} rows ({len(small_peaks)} runs): {_spread(small_peaks)}")
        print(f"peak RSS, {args.big_rows:,} rows ({len(big_peaks)} runs): {_spread(big_peaks)}")
        change = statistics.median(big_peaks) - statistics.median(small_peaks)
        print(f"median peak, big file minus small file: {change:+.0f} MB (target <= 0)")


def _drift(drift: dict[str, float] | None) -> str:
    if drift is None:
        return "plateau too short to measure drift"
    return (
        f"plateau drift {drift['mb_per_million_rows']:+.2f} MB per million rows "
        f"(mean RSS {drift['first']:.1f} MB in its first fifth, {drift['last']:.1f} MB in its "
        f"last; {drift['samples']:.0f} samples)"
    )


def _spread(values: list[float]) -> str:
    return (
        f"min {min(values):.0f} / median {statistics.median(values):.0f} / max {max(values):.0f} MB"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
