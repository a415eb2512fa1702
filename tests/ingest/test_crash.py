"""Killing an ingest mid-way (SIGKILL) leaves the previous version intact and readable."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from civicshare.catalog import service as catalog
from civicshare.config import Settings
from civicshare.hub import Hub
from civicshare.ingest import service as ingest
from civicshare.permissions import CLI_ADMIN
from civicshare.storage import service as storage
from tests.support.datasets import make_dataset

SCHEMA = {
    "fields": [
        {"name": "id", "type": "integer"},
        {"name": "when", "type": "date"},
        {"name": "count", "type": "integer"},
    ],
    "primaryKey": ["id"],
}

# Runs in the child: ingest a large file, announce the first batch, then keep going slowly.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from civicshare.catalog import service as catalog
    from civicshare.config import Settings
    from civicshare.hub import Hub
    from civicshare.ingest import service as ingest
    from civicshare.permissions import CLI_ADMIN

    def progress(rows, _bytes):
        print(f"rows {rows}", flush=True)
        time.sleep(0.2)

    hub = Hub(Settings(home=sys.argv[1], database_url=sys.argv[2]))
    with hub.db.session() as db:
        dataset = catalog.get_dataset(db=db, ref="transport.counts")
        ingest.ingest_file(db=db, hub=hub, actor=CLI_ADMIN, dataset=dataset,
                           source=Path(sys.argv[3]), filename="big.csv", mode="replace",
                           progress=progress)
    print("finished", flush=True)
    """
)


def counts_csv(path: Path, rows: int, start: int = 0) -> Path:
    with path.open("w") as handle:
        handle.write("id,when,count\n")
        for i in range(start, start + rows):
            handle.write(f"{i},2024-01-{1 + i % 28:02d},{i % 97}\n")
    return path


@pytest.mark.slow
def test_sigkill_mid_ingest_keeps_the_previous_version(
    hub: Hub, db: Session, settings: Settings, tmp_path: Path
) -> None:
    dataset = make_dataset(db, "transport.counts", SCHEMA)
    first = ingest.ingest_file(
        db=db,
        hub=hub,
        actor=CLI_ADMIN,
        dataset=dataset,
        source=counts_csv(tmp_path / "small.csv", 500),
        filename="small.csv",
    )
    assert first.version == 1
    db.commit()

    big = counts_csv(tmp_path / "big.csv", 400_000, start=10_000)
    command = [
        sys.executable,
        "-c",
        CHILD,
        str(settings.home),
        settings.resolved_database_url,
        str(big),
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        line = child.stdout.readline()  # the first batch is validated and being written
        if not line.startswith("rows "):
            child.kill()
            pytest.fail(f"the child did not start ingesting: {line!r}")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with hub.db.session() as fresh:
        dataset = catalog.get_dataset(db=fresh, ref="transport.counts")
        assert [v.number for v in storage.list_versions(db=fresh, dataset=dataset)] == [1]
        rows = storage.read_version(db=fresh, hub=hub, dataset=dataset).read_all()
        assert rows.column("id").to_pylist() == list(range(500))
        # And the dataset still takes new versions.
        again = ingest.ingest_file(
            db=fresh,
            hub=hub,
            actor=CLI_ADMIN,
            dataset=dataset,
            source=counts_csv(tmp_path / "next.csv", 10, start=500),
            filename="next.csv",
        )
        assert again.version == 2
