"""The ingest API over HTTP against a real `civicshare serve` process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from civicshare.config import Settings
from civicshare.hub import Hub
from tests.ingest.test_service import CASES_SCHEMA, PLANTED_NAME, planted_csv
from tests.support.datasets import make_dataset
from tests.support.hubproc import HubProcess, start_hub_process


def hub_of(proc: HubProcess) -> Hub:
    return Hub(Settings(home=proc.home, database_url=proc.database_url))


def register(proc: HubProcess, ref: str) -> None:
    hub = hub_of(proc)
    try:
        with hub.db.session() as db:
            make_dataset(db, ref, CASES_SCHEMA)
    finally:
        hub.close()


def upload(
    proc: HubProcess, ref: str, path: Path, role: str = "steward", **params: str
) -> httpx.Response:
    agency, slug = ref.split(".")
    with (
        proc.as_role(role, agency if role != "analyst" else "police") as client,
        path.open("rb") as handle,
    ):
        return client.post(
            f"/api/v1/datasets/{agency}/{slug}/ingest",
            params=params,
            files={"file": (path.name, handle, "text/csv")},
        )


def test_upload_report_and_quarantine(hub_process: HubProcess, tmp_path: Path) -> None:
    register(hub_process, "health.api_cases")
    response = upload(hub_process, "health.api_cases", planted_csv(tmp_path), max_error_rate="0.1")
    assert response.status_code == 201, response.text
    report = response.json()
    assert (report["version"], report["rows_accepted"], report["rows_rejected"]) == (1, 60, 4)
    assert report["errors_by_rule"]["enum"] == 1
    assert PLANTED_NAME not in response.text

    path = f"/api/v1/datasets/health/api_cases/ingests/{report['id']}"
    with hub_process.as_role("steward", "health") as client:
        detail = client.get(path).json()
    assert ("onset", "13/45/2024") in {(q["field"], q["value"]) for q in detail["quarantine"]}
    with hub_process.as_role("auditor", "health") as client:
        listed = client.get("/api/v1/datasets/health/api_cases/ingests")
    assert [r["id"] for r in listed.json()] == [report["id"]]
    with hub_process.as_role("analyst", "police") as client:
        assert client.get(path).status_code == 404  # a private dataset of another agency


def test_other_agencies_cannot_upload(hub_process: HubProcess, tmp_path: Path) -> None:
    register(hub_process, "health.api_private")
    response = upload(hub_process, "health.api_private", planted_csv(tmp_path), role="analyst")
    assert response.status_code == 404


def test_too_many_errors_is_422_and_stores_nothing(hub_process: HubProcess, tmp_path: Path) -> None:
    register(hub_process, "health.api_strict")
    response = upload(hub_process, "health.api_strict", planted_csv(tmp_path, good=10))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "error_rate_exceeded"
    assert error["details"]["status"] == "rejected"
    with hub_process.as_role("steward", "health") as client:
        ingests = client.get("/api/v1/datasets/health/api_strict/ingests").json()
    assert [(i["status"], i["version"]) for i in ingests] == [("rejected", None)]


def test_malformed_upload_gives_a_clear_code(hub_process: HubProcess, tmp_path: Path) -> None:
    register(hub_process, "health.api_bad")
    path = tmp_path / "bad.json"
    path.write_text('[{"case_id": 1,')
    response = upload(hub_process, "health.api_bad", path)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "malformed_json"


@pytest.fixture
def small_upload_hub(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubProcess]:
    monkeypatch.setenv("CIVICSHARE_MAX_UPLOAD_BYTES", "4096")
    with start_hub_process(settings) as proc:
        yield proc


@pytest.mark.slow
def test_oversized_upload_is_413(small_upload_hub: HubProcess, tmp_path: Path) -> None:
    register(small_upload_hub, "health.api_big")
    response = upload(small_upload_hub, "health.api_big", planted_csv(tmp_path, good=500))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
