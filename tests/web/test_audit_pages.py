"""The audit page over real HTTP: checkpoint, agency history, one-click verification."""

from __future__ import annotations

import pytest

from tests.support.hubproc import HubProcess
from tests.web.portal_client import PortalClient, staff_client
from tests.web.seed import seed_catalog


@pytest.fixture(scope="module")
def hub(hub_process: HubProcess) -> HubProcess:
    seed_catalog(hub_process)
    return hub_process


def test_auditor_verifies_the_log_in_one_click(hub: HubProcess) -> None:
    with staff_client(hub, "auditor", "health") as auditor:
        page = auditor.get("/audit")
        assert page.status_code == 200
        assert "Current signed checkpoint" in page.text
        assert "— " in page.text  # the signed note's signature line
        verdict = auditor.post_form("/audit/verify", {}, form_page="/audit")
    assert verdict.status_code == 200
    assert "Verified." in verdict.text
    assert "records verified" in verdict.text


def test_steward_sees_access_to_own_data_but_cannot_verify(hub: HubProcess) -> None:
    with staff_client(hub, "steward", "transport") as steward:
        steward.get("/open-data/transport.bike_counts", params={"preview": "1"})
        page = steward.get("/audit")
        refused = steward.post_form("/audit/verify", {}, form_page="/audit")
    assert "Access to transport's data" in page.text
    assert "transport.bike_counts" in page.text
    assert "Verify the whole log" not in page.text
    assert refused.status_code == 403


def test_audit_needs_a_login(hub: HubProcess) -> None:
    with PortalClient(hub) as public:
        assert public.get("/audit").status_code == 303
