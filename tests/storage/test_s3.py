"""Storage on ``s3://`` through pyarrow.fs, against a real S3-compatible server (moto's)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from civicshare.catalog import service as catalog
from civicshare.config import Settings
from civicshare.errors import Gone
from civicshare.hub import init_home
from civicshare.permissions import CLI_ADMIN
from civicshare.storage import service as storage
from tests.storage.test_service import PLANTED_NAME, people, read, write
from tests.support.datasets import make_dataset

BUCKET = "civicshare-test"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server process on a free port, with one empty bucket; its host:port."""
    server = Path(sys.executable).with_name("moto_server")
    if not server.exists():
        message = "moto_server is not installed (pip install -e '.[dev]')"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port()
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3_settings(
    s3_endpoint: str, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    # moto accepts any credentials; these keep the AWS SDK from looking for real ones.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    prefix = f"hub-{tmp_path.name}"
    query = f"region=us-east-1&scheme=http&endpoint_override={s3_endpoint}"
    filesystem = pafs.S3FileSystem(
        region="us-east-1",
        scheme="http",
        endpoint_override=s3_endpoint,
        allow_bucket_creation=True,
    )
    if filesystem.get_file_info(BUCKET).type == pafs.FileType.NotFound:
        filesystem.create_dir(BUCKET)
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        storage_url=f"s3://{BUCKET}/{prefix}?{query}",
    )


def test_versions_are_written_read_and_shredded_on_s3(s3_settings: Settings) -> None:
    hub, _created = init_home(s3_settings)
    try:
        assert isinstance(hub.storage.fs, pafs.S3FileSystem)
        with hub.db.session() as db:
            dataset = make_dataset(db, "health.cases")
            write(db, hub, dataset, people(3000, name=PLANTED_NAME))
            write(db, hub, dataset, people(500, start=3000), keep_previous=True, operation="append")
        with hub.db.session() as db:
            dataset = catalog.get_dataset(db=db, ref="health.cases")
            first = people(3000, name=PLANTED_NAME).to_pylist()
            assert read(db, hub, dataset).to_pylist() == first + people(500, start=3000).to_pylist()
            assert read(db, hub, dataset, version=1).to_pylist() == first
            files = hub.storage.list_files("datasets")
            assert len(files) == 2
            for stored in files:
                with hub.storage.open_input(stored.path) as handle:
                    content = handle.read()
                assert PLANTED_NAME.encode() not in content
                assert b"PAR1" not in content
            storage.purge_dataset(db=db, actor=CLI_ADMIN, dataset=dataset)
        with hub.db.session() as db:
            dataset = catalog.get_dataset(db=db, ref="health.cases")
            with pytest.raises(Gone):
                read(db, hub, dataset)
            report = storage.collect_garbage(
                db=db, hub=hub, actor=CLI_ADMIN, apply=True, min_age=dt.timedelta(0)
            )
            assert sorted(report.shredded) == sorted(f.path for f in files)
            assert hub.storage.list_files("datasets") == []
    finally:
        hub.close()
