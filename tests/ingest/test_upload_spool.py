"""An upload in flight is never readable on the hub's disk (Starlette would spool it in clear)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from civicshare.storage.segments import SealedSpool
from tests.ingest.test_views import register
from tests.support.hubproc import HubProcess
from tests.support.procfs import open_files

BOUNDARY = "civicshare-test-boundary"


def _unnamed_files_over(pid: int, size: int) -> list[Path]:
    files = []
    for fd in open_files(pid):
        try:
            if os.readlink(fd).endswith("(deleted)") and fd.stat().st_size > size:
                files.append(fd)
        except OSError:
            continue
    return files


def test_an_upload_is_sealed_on_disk_while_it_streams_in(
    hub_process: HubProcess, tmp_path: Path
) -> None:
    register(hub_process, "health.api_spool")
    marker = f"Spool Marker {uuid.uuid4().hex[:8]}"
    rows = [f"{i},{marker} {i},01/{1 + i % 28:02d}/2024,confirmed" for i in range(1, 60_001)]
    body = ("case_id,full_name,onset,status\n" + "\n".join(rows) + "\n").encode()
    assert len(body) > 3 * 1024 * 1024  # well past Starlette's 1 MiB in-memory spool
    half = len(body) // 2
    paused, resume = threading.Event(), threading.Event()

    def multipart() -> Iterator[bytes]:
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="cases.csv"\r\nContent-Type: text/csv\r\n\r\n'
        ).encode()
        yield body[:half]
        paused.set()
        resume.wait(60)
        yield body[half:]
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    responses: list[httpx.Response] = []

    def send() -> None:
        with hub_process.as_role("steward", "health") as client:
            responses.append(
                client.post(
                    "/api/v1/datasets/health/api_spool/ingest",
                    content=multipart(),
                    headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                    timeout=120,
                )
            )

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert paused.wait(60)
        pid = hub_process.process.pid
        spooled: list[Path] = []
        for _ in range(600):  # until the hub has written the first half out
            spooled = _unnamed_files_over(pid, half // 2)
            if spooled:
                break
            threading.Event().wait(0.05)
        assert spooled, "the hub did not spool the upload to a file"
        needle = marker.encode()
        for fd in open_files(pid):
            try:
                assert needle not in fd.read_bytes(), f"{os.readlink(fd)} holds the upload"
            except OSError:
                continue
    finally:
        resume.set()
        sender.join(120)
    (response,) = responses
    assert response.status_code == 201, response.text
    assert response.json()["rows_accepted"] == 60_000


def test_a_sealed_spool_reads_back_what_was_written_and_seeks(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    spool = SealedSpool(str(tmp_path))
    for start in range(0, len(data), 65_000):
        spool.write(data[start : start + 65_000])
    assert spool.seek(0) == 0
    assert spool.read() == data
    spool.seek(1024 * 1024 - 5)
    assert spool.read(10) == data[1024 * 1024 - 5 : 1024 * 1024 + 5]
    assert spool.seek(0, os.SEEK_END) == len(data)
    spool.close()
    assert not list(tmp_path.iterdir())  # it never had a name
