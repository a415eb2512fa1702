"""Delta Sharing download: the official client's ``load_as_pandas`` of a shared table.

Three readers of the same rows, in the same run:
- the hub: a 10,000,000-row dataset shared under an agreement that masks one column, served
  by a local ``civicshare serve`` (policy view, in-memory Parquet, signed URLs, audit);
- the reference: a bare Starlette app (``bench/_static_sharing.py``) answering the same
  protocol calls with plaintext Parquet files from local disk via ``FileResponse``;
- ``pyarrow.parquet.read_table(...).to_pandas()`` of those files, without HTTP or the client.

The hub's first load includes building the policy view and encoding it (reported separately);
the timed runs alternate between hub and reference. Run: ``python -m bench sharing``
(``CIVICSHARE_BENCH_SHARING_ROWS`` sets another row count).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DEFAULT_ROWS = 10_000_000
BATCH_ROWS = 1_000_000
RUNS = 3


def main(argv: list[str]) -> None:
    rows = (
        int(argv[0]) if argv else int(os.environ.get("CIVICSHARE_BENCH_SHARING_ROWS", DEFAULT_ROWS))
    )
    folder = Path(tempfile.mkdtemp(prefix="civicshare-bench-sharing-"))
    try:
        run(folder, rows)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def batches(rows: int) -> Iterator[pa.RecordBatch]:
    start = dt.date(2025, 1, 1).toordinal()
    for offset in range(0, rows, BATCH_ROWS):
        ids = pa.array(range(offset + 1, min(offset + BATCH_ROWS, rows) + 1), pa.int64())
        yield pa.RecordBatch.from_pydict(
            {
                "case_id": ids,
                "full_name": pc.binary_join_element_wise(
                    "Resident ", pc.cast(ids, pa.string()), ""
                ),
                "zip": pc.cast(pc.add(pc.bit_wise_and(ids, 63), 94100), pa.string()),
                "age": pc.bit_wise_and(pc.multiply(ids, 7919), 127),
                "score": pc.divide(pc.cast(pc.bit_wise_and(ids, 1023), pa.float64()), 7.0),
                "report_date": pc.cast(
                    pc.cast(pc.add(pc.bit_wise_and(ids, 511), start - 719163), pa.int32()),
                    pa.date32(),
                ),
            }
        )


SCHEMA = {
    "fields": [
        {"name": "case_id", "type": "integer", "constraints": {"required": True}},
        {"name": "full_name", "type": "string", "classification": "personal", "pii": "name"},
        {"name": "zip", "type": "string"},
        {"name": "age", "type": "integer"},
        {"name": "score", "type": "number"},
        {"name": "report_date", "type": "date"},
    ],
    "primaryKey": ["case_id"],
}
GRANTED = {
    "case_id": "clear",
    "full_name": "redact",
    "zip": "clear",
    "age": "clear",
    "score": "clear",
    "report_date": "clear",
}


def setup_hub(home: Path, rows: int) -> tuple[str, dict[str, str]]:
    """A hub home holding the shared dataset; returns the agreement id and its profile."""
    from civicshare.agency import service as agency_service
    from civicshare.agency.models import AgencyCreate, Role, UserCreate
    from civicshare.catalog import service as catalog
    from civicshare.catalog.models import DatasetCreate
    from civicshare.catalog.tableschema import TableSchema
    from civicshare.config import Settings
    from civicshare.hub import init_home
    from civicshare.permissions import CLI_ADMIN
    from civicshare.policy import service as policy
    from civicshare.policy.models import AgreementRequest
    from civicshare.sharing import profiles
    from civicshare.sharing.models import ShareProfileCreate
    from civicshare.storage import service as storage

    hub, _ = init_home(Settings(home=home))
    with hub.db.session() as db:
        people = {}
        for slug, role in (("health", Role.steward), ("fire_ems", Role.analyst)):
            agency_service.create_agency(
                db=db, actor=CLI_ADMIN, data=AgencyCreate(slug=slug, title=slug)
            )
            user = agency_service.create_user(
                db=db,
                actor=CLI_ADMIN,
                data=UserCreate(
                    email=f"{slug}@bench.org", display_name=slug, role=role, agency=slug
                ),
            )
            people[slug] = agency_service.actor_for(user)
        dataset = catalog.create_dataset(
            db=db,
            actor=CLI_ADMIN,
            data=DatasetCreate(
                agency="health",
                slug="cases",
                title="Cases",
                visibility="hub",
                table_schema=TableSchema.model_validate(SCHEMA),
            ),
        )
        stored = catalog.current_schema(db=db, dataset=dataset).arrow_schema()
        storage.write_version(
            db=db,
            hub=hub,
            actor=CLI_ADMIN,
            dataset=dataset,
            batches=(batch.cast(stored) for batch in batches(rows)),
            schema=stored,
            keep_previous=False,
            operation="replace",
        )
        now = dt.datetime.now(dt.UTC)
        made = policy.request_agreement(
            db=db,
            actor=people["fire_ems"],
            data=AgreementRequest(
                title="Cases for emergency services",
                recipient="fire_ems",
                purpose="public_health_surveillance",
                legal_basis="Benchmark",
                valid_from=now - dt.timedelta(days=1),
                valid_until=now + dt.timedelta(days=30),
                datasets=[{"dataset": "health.cases", "columns": GRANTED}],  # type: ignore[list-item]
            ),
        )
        policy.approve_agreement(db=db, actor=people["health"], agreement_id=made.public_id)
        profile, secret = profiles.issue_agreement_profile(
            db=db, actor=people["health"], agreement_id=made.public_id, data=ShareProfileCreate()
        )
        agreement_id = made.public_id
    hub.close()
    return agreement_id, {"secret": secret, "profile": profile.public_id}


def write_reference_files(home: Path, folder: Path, rows: int) -> None:
    """The same rows the recipient receives, as plaintext Parquet files (the same encoding)."""
    from sqlalchemy import select

    from civicshare.config import Settings
    from civicshare.hub import Hub
    from civicshare.sharing import profiles, service
    from civicshare.sharing.materialize import materialize
    from civicshare.sharing.models import ShareProfile

    hub = Hub(Settings(home=home))
    with hub.db.session() as db:
        profile = db.scalars(select(ShareProfile)).one()
        recipient = profiles.live_recipient(db=db, profile=profile)
        (table,) = service.list_tables(db=db, recipient=recipient, share=recipient.share)
        reader = service.recipient_rows(db=db, hub=hub, recipient=recipient, table=table, version=1)
        content = materialize(reader, reader.schema, fingerprint="reference")
    hub.close()
    folder.mkdir()
    for index, part in enumerate(content.parts):
        (folder / f"part-{index:05d}.parquet").write_bytes(part.data)
    assert content.rows == rows


def start(command: list[str], env: dict[str, str], url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited:\n{log.read_text()}")
        try:
            httpx.get(url, timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command} did not start:\n{log.read_text()}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def timed(load: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = load()
    return time.perf_counter() - started, result


def run(folder: Path, rows: int) -> None:
    import delta_sharing

    home = folder / "home"
    print(f"rows: {rows:,}; building the hub home (ingest, agreement, profile)…", flush=True)
    agreement_id, profile = setup_hub(home, rows)
    reference = folder / "reference"
    write_reference_files(home, reference, rows)
    size = sum(path.stat().st_size for path in reference.glob("*.parquet"))
    print(f"shared content: {len(list(reference.glob('*.parquet')))} files, {size / 1e6:.1f} MB")

    hub_port, static_port = free_port(), free_port()
    env = dict(os.environ, CIVICSHARE_HOME=str(home))
    hub = start(
        [sys.executable, "-m", "civicshare", "serve", "--port", str(hub_port)],
        env,
        f"http://127.0.0.1:{hub_port}/healthz",
        folder / "hub.log",
    )
    static = start(
        [sys.executable, "-m", "bench._static_sharing", str(reference), str(static_port)],
        dict(os.environ),
        f"http://127.0.0.1:{static_port}/files/none",
        folder / "static.log",
    )
    try:
        hub_url = write_profile(folder / "hub.share", hub_port, profile["secret"])
        static_url = write_profile(folder / "static.share", static_port, "unused")
        share = agreement_id.lower()
        hub_table = f"{hub_url}#{share}.health.cases"
        static_table = f"{static_url}#{share}.health.cases"
        cold, frame = timed(lambda: delta_sharing.load_as_pandas(hub_table))
        assert len(frame) == rows  # type: ignore[arg-type]
        assert set(frame["full_name"]) == {"[redacted]"}  # type: ignore[index]
        del frame
        hub_times, static_times, local_times = [], [], []
        for _ in range(RUNS):
            hub_times.append(timed(lambda: len(delta_sharing.load_as_pandas(hub_table)))[0])
            static_times.append(timed(lambda: len(delta_sharing.load_as_pandas(static_table)))[0])
            local_times.append(timed(lambda: len(pq.read_table(reference).to_pandas()))[0])
    finally:
        for process in (hub, static):
            process.terminate()
            process.wait(timeout=30)
    report(rows, cold, hub_times, static_times, local_times)


def write_profile(path: Path, port: int, token: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "shareCredentialsVersion": 1,
                "endpoint": f"http://127.0.0.1:{port}/delta-sharing",
                "bearerToken": token,
            }
        )
    )
    return path


def report(
    rows: int, cold: float, hub: list[float], static: list[float], local: list[float]
) -> None:
    hub_s, static_s, local_s = (statistics.median(t) for t in (hub, static, local))
    print(f"hub, first load (builds the policy view):  {cold:7.2f} s")
    print(
        f"hub load_as_pandas (median of {len(hub)}):         {hub_s:7.2f} s  "
        f"{rows / hub_s / 1e6:6.2f} M rows/s  runs {', '.join(f'{t:.2f}' for t in hub)}"
    )
    print(
        f"static FileResponse load_as_pandas:          {static_s:7.2f} s  "
        f"{rows / static_s / 1e6:6.2f} M rows/s  runs {', '.join(f'{t:.2f}' for t in static)}"
    )
    print(
        f"pyarrow read_table().to_pandas() (local):    {local_s:7.2f} s  "
        f"{rows / local_s / 1e6:6.2f} M rows/s"
    )
    print(f"hub speed / static server speed: {static_s / hub_s:.2f}  (target >= 0.80)")
    print(f"hub speed / local pyarrow speed: {local_s / hub_s:.2f}")
    print(f"static speed / local pyarrow speed: {local_s / static_s:.2f}")  # fmt: skip
