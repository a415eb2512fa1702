"""`civicshare audit verify|prove|log` against a real hub process, its database tampered with."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from civicshare.audit import service as audit
from civicshare.audit.merkle import MemoryTree
from civicshare.audit.models import AuditCheckpoint, AuditCounter, AuditEntry, AuditNode
from civicshare.audit.note import Checkpoint, Signer, Verifier
from civicshare.audit.verifier import HttpLogSource, audit_api, verify_log
from civicshare.cli.audit import LocalLogSource
from civicshare.db import Database
from civicshare.errors import Invalid, Unavailable
from civicshare.hub import Hub
from tests.support.hubproc import HubProcess


def cli(proc: HubProcess, *args: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    environment.update(
        CIVICSHARE_HOME=str(proc.home), CIVICSHARE_DATABASE_URL=proc.database_url, COLUMNS="200"
    )
    return subprocess.run(
        [sys.executable, "-m", "civicshare", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def hub_key(proc: HubProcess) -> str:
    """The verifier key, taken from the hub's home (as its administrator publishes it)."""
    result = cli(proc, "audit", "key")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def verify(proc: HubProcess, key: str, *extra: str) -> tuple[int, dict[str, Any]]:
    token = proc.login("auditor").token
    args = ["audit", "verify", "--url", proc.base_url, "--key", key, "--token", token, "--json"]
    result = cli(proc, *args, *extra)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.fixture
def database(hub_process: HubProcess) -> Iterator[Database]:
    database = Database(hub_process.database_url)
    yield database
    database.dispose()


def log_size(database: Database) -> int:
    with database.session() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0)


def saved_rows(database: Database, indexes: list[int]) -> list[dict[str, Any]]:
    table = AuditEntry.__table__
    with database.session() as db:
        query = sa.select(table).where(table.c.index.in_(indexes))
        return [dict(row._mapping) for row in db.execute(query)]


def restore(database: Database, rows: list[dict[str, Any]]) -> None:
    table = AuditEntry.__table__
    with database.session() as db:
        db.execute(sa.delete(table).where(table.c.index.in_([row["index"] for row in rows])))
        db.execute(sa.insert(table), rows)


def alter_one_byte(database: Database, index: int) -> None:
    with database.session() as db:
        record = bytearray(
            db.scalars(sa.select(AuditEntry.record).where(AuditEntry.index == index)).one()
        )
        position = record.index(b'"action":"') + len(b'"action":"')
        record[position] = ord("X") if record[position] != ord("X") else ord("Y")
        db.execute(
            sa.update(AuditEntry).where(AuditEntry.index == index).values(record=bytes(record))
        )


def delete_record(database: Database, index: int) -> None:
    with database.session() as db:
        db.execute(sa.delete(AuditEntry).where(AuditEntry.index == index))


def swap_records(database: Database, first: int, second: int) -> None:
    with database.session() as db:
        rows = dict(
            db.execute(
                sa.select(AuditEntry.index, AuditEntry.record).where(
                    AuditEntry.index.in_([first, second])
                )
            ).all()
        )
        for index, other in ((first, second), (second, first)):
            db.execute(
                sa.update(AuditEntry).where(AuditEntry.index == index).values(record=rows[other])
            )


def truncate(database: Database, start: int) -> None:
    with database.session() as db:
        db.execute(sa.delete(AuditEntry).where(AuditEntry.index >= start))


Tamper = Callable[[Database, int], None]
SCENARIOS: dict[str, tuple[Tamper, str, Callable[[int], list[int]]]] = {
    "alter one byte": (alter_one_byte, "altered", lambda k: [k]),
    "delete a record": (delete_record, "missing", lambda k: [k]),
    "swap two records": (lambda d, k: swap_records(d, k, k + 3), "reordered", lambda k: [k, k + 3]),
    "truncate the log": (truncate, "truncated", lambda k: list(range(k, k + 1000))),
}


def test_untouched_log_verifies(hub_process: HubProcess) -> None:
    code, verdict = verify(hub_process, hub_key(hub_process))
    assert code == 0, verdict
    assert verdict["ok"] is True
    assert verdict["size"] > 10


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_tampering_is_reported_at_the_first_affected_index(
    hub_process: HubProcess, database: Database, scenario: str
) -> None:
    key = hub_key(hub_process)
    code, before = verify(hub_process, key)  # the hub signs a checkpoint covering every record
    assert code == 0, before
    tamper, problem, touched = SCENARIOS[scenario]
    target = before["size"] // 2
    rows = saved_rows(database, touched(target))
    tamper(database, target)
    try:
        code, verdict = verify(hub_process, key)
    finally:
        restore(database, rows)
    assert code == 1
    assert (verdict["ok"], verdict["problem"], verdict["first_bad_index"]) == (
        False,
        problem,
        target,
    ), verdict
    assert verify(hub_process, key)[0] == 0, "restoring the records restores the proof"


def test_checkpoint_signed_by_another_key_is_rejected(hub_process: HubProcess) -> None:
    genuine = Verifier.parse(hub_key(hub_process))
    forger = Signer(genuine.name, Ed25519PrivateKey.generate())
    code, verdict = verify(hub_process, str(forger.verifier))
    assert code == 1
    assert verdict["problem"] == "bad_signature"


def test_local_home_prove_and_log(hub_process: HubProcess) -> None:
    key = hub_key(hub_process)
    local = cli(hub_process, "audit", "verify", "--key", key, "--json")
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)["ok"] is True
    proof = cli(hub_process, "audit", "prove", "3", "--json")
    assert proof.returncode == 0, proof.stderr
    body = json.loads(proof.stdout)
    assert body["verified"] is True
    assert body["record"]["index"] == 3
    listing = cli(hub_process, "audit", "log", "--action", "token", "--limit", "3", "--json")
    assert listing.returncode == 0, listing.stderr
    records = json.loads(listing.stdout)["records"]
    assert len(records) == 3
    assert all(r["record"]["action"].startswith("token.") for r in records)
    bad = cli(hub_process, "audit", "verify", "--key", "not-a-key")
    assert bad.returncode == 1
    assert "bad_key" in bad.stderr


def test_a_fork_is_caught_against_the_accepted_state(
    fresh_hub_process: HubProcess, tmp_path: Path
) -> None:
    proc, state = fresh_hub_process, tmp_path / "state.json"
    key = hub_key(proc)
    assert verify(proc, key, "--state", str(state))[0] == 0
    with proc.as_role("admin") as admin:
        assert admin.post("/api/v1/agencies", json={"slug": "parks", "title": "P"}).is_success
    code, verdict = verify(proc, key, "--state", str(state))
    assert code == 0, verdict
    target = verdict["size"] // 3
    # Someone with database access rewrites a record, rebuilds the tree and drops the signed
    # checkpoints: the hub then signs the rewritten history, which a fresh verifier would accept.
    database = Database(proc.database_url)
    try:
        alter_one_byte(database, target)
        with database.session() as db:
            record = db.scalars(
                sa.select(AuditEntry.record).where(AuditEntry.index == target)
            ).one()
            db.execute(
                sa.update(AuditEntry)
                .where(AuditEntry.index == target)
                .values(leaf_hash=hashlib.sha256(b"\x00" + record).digest())
            )
            db.execute(sa.delete(AuditNode))
            db.execute(sa.delete(AuditCheckpoint))
            db.execute(
                sa.update(AuditCounter).where(AuditCounter.name == "integrated").values(value=0)
            )
    finally:
        database.dispose()
    code, verdict = verify(proc, key, "--state", str(state))
    assert code == 1
    assert verdict["problem"] == "fork"
    assert verdict["first_bad_index"] == target


def _local_log(hub: Hub, records: int) -> tuple[LocalLogSource, Verifier]:
    with hub.db.session() as db:
        for number in range(records):
            audit.record(db, actor=None, action=f"test.event{number}")
        audit.ensure_signing_key(db, hub)
        return LocalLogSource(hub), audit.verifier(db)


def test_a_damaged_state_file_is_refused_not_blamed_on_the_hub(hub: Hub, tmp_path: Path) -> None:
    source, verifier = _local_log(hub, 20)
    state = tmp_path / "state.json"
    assert verify_log(source, verifier, state=state).ok
    leaves = tmp_path / "state.json.leaves"
    damaged = bytearray(leaves.read_bytes())
    damaged[5 * 32] ^= 0x01  # same length: only the hashes tell
    leaves.write_bytes(bytes(damaged))
    with pytest.raises(Invalid) as error:
        verify_log(source, verifier, state=state)
    assert error.value.code == "bad_state"


def test_a_rewritten_history_signed_again_is_a_fork_at_the_first_changed_record(
    hub: Hub, tmp_path: Path
) -> None:
    source, verifier = _local_log(hub, 40)
    state = tmp_path / "state.json"
    assert verify_log(source, verifier, state=state).ok
    _local_log(hub, 5)
    target = 17
    # The database's owner rewrites a record, rebuilds the tree and drops the signed checkpoints,
    # so the hub signs the rewritten history: only the accepted state can tell.
    alter_one_byte(hub.db, target)
    with hub.db.session() as db:
        record = db.scalars(sa.select(AuditEntry.record).where(AuditEntry.index == target)).one()
        db.execute(
            sa.update(AuditEntry)
            .where(AuditEntry.index == target)
            .values(leaf_hash=hashlib.sha256(b"\x00" + record).digest())
        )
        db.execute(sa.delete(AuditNode))
        db.execute(sa.delete(AuditCheckpoint))
        db.execute(sa.update(AuditCounter).where(AuditCounter.name == "integrated").values(value=0))
    verdict = verify_log(source, verifier, state=state)
    assert (verdict.ok, verdict.problem, verdict.first_bad_index) == (False, "fork", target)


class _Overfull:
    """A hub that answers every page with one record more than was asked for."""

    def __init__(self, inner: LocalLogSource) -> None:
        self.inner = inner

    def checkpoint(self) -> str:
        return self.inner.checkpoint()

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        page = self.inner.entries(start, end)
        extra = page[-1][0] + 1
        return [*page, (extra, b'{"index":%d}' % extra)]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return self.inner.inclusion(index, size)

    def consistency(self, first: int, second: int) -> list[bytes]:
        return self.inner.consistency(first, second)


def test_records_beyond_the_signed_checkpoint_are_not_verified(hub: Hub) -> None:
    source, verifier = _local_log(hub, 12)
    verdict = verify_log(_Overfull(source), verifier)
    assert verdict.ok, verdict
    assert verdict.size == 12


class _Unproving(_Overfull):
    """A hub that serves its records but refuses every consistency proof."""

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        return self.inner.entries(start, end)

    def consistency(self, first: int, second: int) -> list[bytes]:
        raise Unavailable("the hub answered 500", code="hub_error")


def test_a_hub_refusing_proofs_is_an_error_not_a_guessed_index(hub: Hub) -> None:
    source, verifier = _local_log(hub, 12)
    source.checkpoint()
    alter_one_byte(hub.db, 9)
    with pytest.raises(Unavailable) as error:
        verify_log(_Unproving(source), verifier)
    assert error.value.code == "hub_error"


class _LyingHub(http.server.BaseHTTPRequestHandler):
    """A hub over real HTTP whose checkpoint is genuine but whose other answers are garbage."""

    checkpoint = ""
    body = b""

    def do_GET(self) -> None:
        payload = self.checkpoint.encode() if "/checkpoint" in self.path else self.body
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not json</html>",
        b"[]",
        b'{"entries": [{"index": "0", "leaf_input": "e30="}]}',
        b'{"entries": [{"index": 0, "leaf_input": "not base64!"}]}',
        b'{"entries": [{"index": 0}]}',
        b'{"entries": [{"index": 0, "leaf_input": 7}]}',
    ],
)
def test_malformed_answers_of_a_hub_are_a_clean_error(body: bytes) -> None:
    signer = Signer("city/audit", Ed25519PrivateKey.generate())
    tree = MemoryTree.of_records([b'{"index":0}', b'{"index":1}'])
    handler = type("Handler", (_LyingHub,), {"body": body})
    handler.checkpoint = signer.sign(Checkpoint("city/audit", 2, tree.root()).text())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    source = HttpLogSource(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        with pytest.raises(Unavailable) as error:
            verify_log(source, signer.verifier)
        assert error.value.code == "hub_bad_response"
    finally:
        source.close()
        server.shutdown()
        server.server_close()
        thread.join()


def test_verifying_with_a_token_that_reads_only_some_records_is_refused(
    hub_process: HubProcess,
) -> None:
    steward = hub_process.login("steward", "health").token
    with hub_process.client(steward) as client:
        page = client.get("/api/v1/audit/entries", params={"start": 0, "end": 1000}).json()
    assert page["complete"] is False
    with hub_process.as_role("auditor") as client:
        page = client.get("/api/v1/audit/entries", params={"start": 0, "end": 1000}).json()
    assert page["complete"] is True
    args = ["audit", "verify", "--url", hub_process.base_url, "--key", hub_key(hub_process)]
    result = cli(hub_process, *args, "--token", steward)
    assert result.returncode == 1
    assert "auditor_token_required" in result.stderr
    assert "missing" not in result.stdout + result.stderr
    # Proving one of its own records still works with such a token.
    index = str(_own_record(hub_process, steward))
    args = ["audit", "prove", index, "--json", "--url", hub_process.base_url]
    proved = cli(hub_process, *args, "--key", hub_key(hub_process), "--token", steward)
    assert proved.returncode == 0, proved.stderr
    assert json.loads(proved.stdout)["verified"] is True


def _own_record(proc: HubProcess, token: str) -> int:
    """The index of a record the token's user may read (their own latest action)."""
    with proc.client(token) as client:
        client.get("/api/v1/agencies")
        records = client.get("/api/v1/audit/records", params={"limit": 1}).json()["records"]
    index: int = records[0]["index"]
    return index


def test_a_run_stopped_between_its_two_state_files_leaves_a_usable_state(
    hub: Hub, tmp_path: Path
) -> None:
    source, verifier = _local_log(hub, 10)
    state = tmp_path / "state.json"
    assert verify_log(source, verifier, state=state).ok
    accepted = state.read_bytes()
    _local_log(hub, 6)
    assert verify_log(source, verifier, state=state).ok
    state.write_bytes(accepted)  # the leaves were replaced, then the run was killed
    verdict = verify_log(source, verifier, state=state)
    assert (verdict.ok, verdict.size) == (True, 16), verdict


def test_a_state_file_that_cannot_be_written_is_a_clean_error(hub: Hub, tmp_path: Path) -> None:
    source, verifier = _local_log(hub, 3)
    (tmp_path / "plain-file").write_text("not a folder")
    with pytest.raises(Invalid) as error:
        verify_log(source, verifier, state=tmp_path / "plain-file" / "state.json")
    assert error.value.code == "bad_state"


@pytest.mark.parametrize(
    "given",
    [
        "https://hub.example.org",
        "https://hub.example.org/",
        "https://hub.example.org/api/v1",
        "https://hub.example.org/api/v1/audit/",
    ],
)
def test_the_verifier_finds_the_audit_api_from_any_of_the_hubs_addresses(given: str) -> None:
    assert audit_api(given) == "https://hub.example.org/api/v1/audit"
