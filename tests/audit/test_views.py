"""The audit API over HTTP, against a real hub process on SQLite and PostgreSQL."""

from __future__ import annotations

import base64

from civicshare.audit import merkle
from civicshare.audit.note import Verifier, open_checkpoint
from tests.agency.test_views import assert_error
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
