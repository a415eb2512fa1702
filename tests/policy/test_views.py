"""Agreements and objections over the real HTTP API of a hub process."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from civicshare.config import Settings
from civicshare.hub import Hub
from tests.policy.kit import cases_table, publish
from tests.support.hubproc import HubProcess


@pytest.fixture(scope="module")
def city(hub_process: HubProcess) -> HubProcess:
    hub = Hub(Settings(home=hub_process.home, database_url=hub_process.database_url))
    with hub.db.session() as db:
        publish(db, hub, "health.visits", cases_table(120))
    hub.close()
    return hub_process


def _request(**overrides: object) -> dict[str, object]:
    now = dt.datetime.now(dt.UTC)
    body: dict[str, object] = {
        "title": "Visits for EMS planning",
        "recipient": "fire_ems",
        "purpose": "emergency_response",
        "legal_basis": "Municipal code 4.2",
        "valid_from": (now - dt.timedelta(days=1)).isoformat(),
        "valid_until": (now + dt.timedelta(days=30)).isoformat(),
        "datasets": [{"dataset": "health.visits", "columns": {"zip": "clear", "age": "clear"}}],
    }
    body.update(overrides)
    return body


def test_request_approve_query_export_revoke_over_http(city: HubProcess) -> None:
    with (
        city.as_role("analyst", "fire_ems") as analyst,
        city.as_role("steward", "health") as steward,
    ):
        created = analyst.post("/api/v1/agreements", json=_request())
        assert created.status_code == 201, created.text
        agreement_id = created.json()["id"]
        assert created.json()["state"] == "requested"
        early = analyst.post(
            "/api/v1/query",
            json={"sql": "SELECT zip FROM health.visits", "purpose": "emergency_response"},
        )
        assert early.status_code == 403
        assert early.json()["error"]["code"] == "agreement_not_active"
        own_approval = analyst.post(f"/api/v1/agreements/{agreement_id}/approve", json={})
        assert own_approval.status_code == 403
        approved = steward.post(f"/api/v1/agreements/{agreement_id}/approve", json={"reason": "ok"})
        assert approved.json()["state"] == "active"
        ran = analyst.post(
            "/api/v1/query",
            json={
                "sql": "SELECT count(*) AS n FROM health.visits",
                "purpose": "emergency_response",
            },
        )
        assert ran.status_code == 200, ran.text
        assert ran.json()["rows"] == [[120]]
        assert ran.json()["audit_index"] >= 0
        odrl = analyst.get(f"/api/v1/agreements/{agreement_id}/odrl").json()
        assert odrl["@type"] == "Agreement"
        listed = analyst.get("/api/v1/agreements", params={"state": "active"}).json()
        assert agreement_id in [a["id"] for a in listed]
        assert steward.post(f"/api/v1/agreements/{agreement_id}/revoke", json={}).status_code == 200
        after = analyst.post(
            "/api/v1/query",
            json={
                "sql": "SELECT count(*) AS n FROM health.visits",
                "purpose": "emergency_response",
            },
        )
        assert after.json()["error"]["code"] == "agreement_revoked"
    with city.as_role("analyst", "police") as outsider:
        assert outsider.get(f"/api/v1/agreements/{agreement_id}").status_code == 404


def test_bad_agreement_requests_are_422(city: HubProcess) -> None:
    with city.as_role("analyst", "fire_ems") as analyst:
        bad_purpose = analyst.post("/api/v1/agreements", json=_request(purpose="curiosity"))
        assert bad_purpose.status_code == 422
        bad_treatment = analyst.post(
            "/api/v1/agreements",
            json=_request(datasets=[{"dataset": "health.visits", "columns": {"zip": "blur"}}]),
        )
        assert bad_treatment.status_code == 422


def test_objections_over_http(city: HubProcess) -> None:
    with city.as_role("steward", "health") as steward:
        made = steward.post(
            "/api/v1/objections",
            json={"agency": "health", "field": "resident_id", "value": "R-00003",
                  "purposes": ["research"]},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        assert "R-00003" not in made.text
        listed = steward.get("/api/v1/objections", params={"agency": "health"}).json()
        assert [o["id"] for o in listed] == [made.json()["id"]]
        withdrawn = steward.delete(f"/api/v1/objections/{made.json()['id']}")
        assert withdrawn.json()["withdrawn_at"] is not None
    with city.as_role("analyst", "health") as analyst:
        refused = analyst.post(
            "/api/v1/objections",
            json={
                "agency": "health",
                "field": "resident_id",
                "value": "R-1",
                "purposes": ["research"],
            },
        )
        assert refused.status_code == 403


def test_a_served_hub_records_an_agreement_expiry_once_without_being_asked(
    city: HubProcess,
) -> None:
    closes = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    with (
        city.as_role("analyst", "fire_ems") as analyst,
        city.as_role("steward", "health") as steward,
        city.as_role("auditor") as auditor,
    ):
        created = analyst.post("/api/v1/agreements", json=_request(valid_until=closes.isoformat()))
        assert created.status_code == 201, created.text
        agreement_id = created.json()["id"]
        approved = steward.post(f"/api/v1/agreements/{agreement_id}/approve", json={})
        assert approved.json()["state"] == "active", approved.text

        def expiries() -> list[dict[str, object]]:
            found = auditor.get(
                "/api/v1/audit/records", params={"action": "agreement.expire", "limit": 1000}
            ).json()["records"]
            return [r["record"] for r in found if r["record"]["agreement"] == agreement_id]

        deadline = time.monotonic() + 60  # a bound on waiting for the sweep, not a timing target
        while not expiries():
            assert time.monotonic() < deadline, "no agreement.expire record after 60 s"
            time.sleep(0.2)
        time.sleep(1.5)  # a few more sweeps: they must not record it again
        (record,) = expiries()
        assert analyst.get(f"/api/v1/agreements/{agreement_id}").json()["state"] == "expired"
    assert record["actor"] is None
    assert record["details"] == {
        "valid_until": closes.isoformat(timespec="microseconds")[:-6] + "Z"
    }
