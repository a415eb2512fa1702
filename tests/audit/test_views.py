"""The audit API over HTTP, against a real hub process on SQLite and PostgreSQL."""

from __future__ import annotations

import base64

import httpx

from civicshare.audit import merkle, service
from civicshare.audit.note import Verifier, open_checkpoint
from civicshare.db import Database
from tests.agency.test_views import assert_error
from tests.audit.test_integrator import append, sizes, wait_until
from tests.support.concurrency import write_held
from tests.support.hubproc import HubProcess


def test_checkpoint_key_and_proofs_are_public_and_verify(hub_process: HubProcess) -> None:
    with hub_process.client() as public, hub_process.as_role("auditor") as auditor:
        key = public.get("/api/v1/audit/key")
        assert key.headers["content-type"].startswith("text/plain")
        verifier = Verifier.parse(key.text)
        response = public.get("/api/v1/audit/checkpoint")
        assert response.headers["content-type"].startswith("text/plain")
        checkpoint = open_checkpoint(response.text, verifier)
        assert checkpoint.size > 0
        size = checkpoint.size
        entries = auditor.get("/api/v1/audit/entries", params={"start": 0, "end": size}).json()
        leaves = [base64.b64decode(e["leaf_input"]) for e in entries["entries"]]
        assert [e["index"] for e in entries["entries"]] == list(range(size))
        tree = merkle.MemoryTree.of_records(leaves)
        assert tree.root() == checkpoint.root
        proof = public.get(
            "/api/v1/audit/proof/inclusion", params={"index": size - 1, "size": size}
        ).json()
        assert (proof["leaf_index"], proof["tree_size"]) == (size - 1, size)
        path = [base64.b64decode(value) for value in proof["audit_path"]]
        merkle.verify_inclusion(size - 1, size, tree.leaf(size - 1), path, checkpoint.root)
        consistency = public.get(
            "/api/v1/audit/proof/consistency", params={"first": 1, "second": size}
        ).json()
        assert (consistency["first"], consistency["second"]) == (1, size)
        path = [base64.b64decode(value) for value in consistency["consistency"]]
        merkle.verify_consistency(1, size, tree.root(1), checkpoint.root, path)


def test_entries_need_a_token_and_show_analysts_only_their_own(hub_process: HubProcess) -> None:
    with hub_process.client() as public:
        assert_error(public.get("/api/v1/audit/entries?start=0&end=5"), 401, "unauthenticated")
    analyst = hub_process.login("analyst", "police")
    with hub_process.client(analyst.token) as client:
        client.get("/api/v1/agencies")
        entries = client.get("/api/v1/audit/entries", params={"start": 0, "end": 1000}).json()
        records = client.get("/api/v1/audit/records").json()["records"]
    emails = {str(r["record"]["actor"]["email"]) for r in records if r["record"].get("actor")}
    assert emails <= {analyst.email}
    assert len(entries["entries"]) == len(records)


def test_steward_lists_records_about_their_agency(hub_process: HubProcess) -> None:
    with hub_process.as_role("steward", "housing") as steward:
        page = steward.get("/api/v1/audit/records", params={"action": "token"}).json()
    assert page["records"]
    for item in page["records"]:
        record = item["record"]
        assert record["action"].startswith("token.")
        mine = (record.get("actor") or {}).get("email") == "steward.housing@demo-city.org"
        assert record.get("agency") == "housing" or mine


def test_bad_requests_are_clear_errors(hub_process: HubProcess) -> None:
    with hub_process.client() as public, hub_process.as_role("auditor") as auditor:
        assert_error(
            public.get("/api/v1/audit/proof/inclusion?index=5&size=3"), 422, "bad_proof_range"
        )
        assert_error(
            public.get("/api/v1/audit/proof/consistency?first=1&second=99999999"), 422, "beyond_log"
        )
        assert_error(public.get("/api/v1/audit/proof/inclusion?index=-1"), 422, "validation_error")
        assert_error(auditor.get("/api/v1/audit/entries?start=5&end=5"), 422, "bad_entries_range")
        assert_error(auditor.get("/api/v1/audit/records?outcome=maybe"), 422, "bad_outcome")


def _append(database_url: str, count: int) -> int:
    """Records appended by another hub process on the same database; returns the log's size."""
    database = Database(database_url)
    try:
        for n in range(count):
            with database.session() as db:
                service.record(db, actor=None, action="test.append", details={"n": n})
        with database.session() as db:
            return service.appended_size(db)
    finally:
        database.dispose()


def test_a_proof_beyond_the_integrated_tree_integrates_it_first(hub_process: HubProcess) -> None:
    with hub_process.client() as public, hub_process.as_role("auditor") as auditor:
        key = Verifier.parse(public.get("/api/v1/audit/key").text)
        signed = open_checkpoint(public.get("/api/v1/audit/checkpoint").text, key)
        size = _append(hub_process.database_url, 3)
        consistency = public.get(
            "/api/v1/audit/proof/consistency", params={"first": signed.size, "second": size}
        )
        assert consistency.status_code == 200, consistency.text
        leaves = [
            base64.b64decode(entry["leaf_input"])
            for entry in auditor.get(
                "/api/v1/audit/entries", params={"start": 0, "end": size}
            ).json()["entries"]
        ]
    tree = merkle.MemoryTree.of_records(leaves)
    path = [base64.b64decode(value) for value in consistency.json()["consistency"]]
    merkle.verify_consistency(signed.size, size, signed.root, tree.root(), path)


def test_proofs_and_the_key_do_not_wait_for_a_writer(hub_process: HubProcess) -> None:
    """A writer holding the write turn (SQLite) or the log's counter (PostgreSQL) for a long
    time does not hold up verifiers: proofs, the key and an unchanged checkpoint are read from a
    snapshot."""
    with hub_process.client() as public:
        note = public.get("/api/v1/audit/checkpoint").text
        size = open_checkpoint(note, Verifier.parse(public.get("/api/v1/audit/key").text)).size
    database = Database(hub_process.database_url)
    try:
        with (
            write_held(database, lambda db: service.record(db, actor=None, action="test.hold")),
            httpx.Client(base_url=hub_process.base_url, timeout=15) as public,
        ):
            # The client's timeout bounds the wait, so a regression fails instead of hanging.
            assert public.get("/api/v1/audit/key").status_code == 200
            # Nothing committed since it was signed: the same checkpoint, read, not re-signed.
            assert public.get("/api/v1/audit/checkpoint").text == note
            for path, params in (
                ("/api/v1/audit/proof/inclusion", {"index": 0, "size": size}),
                ("/api/v1/audit/proof/consistency", {"first": 1, "second": size}),
            ):
                response = public.get(path, params=params)
                assert response.status_code == 200, response.text
    finally:
        database.dispose()


def test_a_served_hub_integrates_new_records_without_being_asked(
    hub_process: HubProcess,
) -> None:
    database = Database(hub_process.database_url)
    try:
        append(database, 25, "served")
        # No checkpoint or proof is requested: the hub process's integrator does the work.
        wait_until(lambda: sizes(database)[1] >= sizes(database)[0], "the served hub")
    finally:
        database.dispose()
