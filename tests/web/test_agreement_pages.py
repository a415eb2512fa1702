"""Agreements through the portal over real HTTP: request, approve, read, revoke, refused."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from tests.support.hubproc import HubProcess
from tests.web.portal_client import staff_client
from tests.web.seed import seed_catalog


@pytest.fixture(scope="module")
def hub(hub_process: HubProcess) -> HubProcess:
    seed_catalog(hub_process)
    return hub_process


def _request_form(**overrides: str) -> dict[str, str]:
    today = dt.date.today()
    form = {
        "dataset": "health.flu_cases",
        "title": "Flu cases for EMS surge planning",
        "purpose": "emergency_response",
        "purpose_text": "Plan ambulance staffing during the flu season.",
        "legal_basis": "Public Health Act s. 12",
        "valid_from": (today - dt.timedelta(days=1)).isoformat(),
        "valid_until": (today + dt.timedelta(days=30)).isoformat(),
        "min_cell": "11",
        # case_id, zip, onset — not diagnosis nor patient_name.
        "col_0": "1",
        "treat_0": "pseudonym",
        "col_1": "1",
        "treat_1": "clear",
        "col_2": "1",
        "treat_2": "year_only",
    }
    form.update(overrides)
    return form


def test_request_form_proposes_treatments_from_classification(hub: HubProcess) -> None:
    with staff_client(hub, "analyst", "fire_ems") as analyst:
        page = analyst.get("/agreements/new", params={"dataset": "health.flu_cases"})
    assert page.status_code == 200
    selected = dict(
        re.findall(r'name="(treat_\d)">.*?<option value="([^"]+)" selected', page.text, re.S)
    )
    # case_id internal, zip internal, onset personal date, diagnosis sensitive, name personal
    assert selected == {
        "treat_0": "clear",
        "treat_1": "clear",
        "treat_2": "year_only",
        "treat_3": "null",
        "treat_4": "pseudonym",
    }


def test_invalid_request_shows_errors_and_keeps_the_input(hub: HubProcess) -> None:
    with staff_client(hub, "analyst", "fire_ems") as analyst:
        response = analyst.post_form(
            "/agreements/new",
            _request_form(legal_basis="", valid_until="not a date", purpose_text="kept text"),
            form_page="/agreements/new?dataset=health.flu_cases",
        )
        no_columns = {k: v for k, v in _request_form().items() if not k.startswith("col_")}
        empty = analyst.post_form(
            "/agreements/new", no_columns, form_page="/agreements/new?dataset=health.flu_cases"
        )
    assert response.status_code == 422
    assert 'id="f-valid_until-error"' in response.text
    assert "kept text" in response.text
    assert 'value="Flu cases for EMS surge planning"' in response.text
    assert empty.status_code == 422
    assert "Choose at least one column." in empty.text


def test_request_approve_query_revoke_refuse(hub: HubProcess) -> None:
    analyst = staff_client(hub, "analyst", "fire_ems")
    steward = staff_client(hub, "steward", "health")
    with analyst, steward:
        sent = analyst.post_form(
            "/agreements/new", _request_form(), form_page="/agreements/new?dataset=health.flu_cases"
        )
        assert sent.status_code == 303, sent.text
        agreement_path = sent.headers["location"]
        agreement_id = agreement_path.rsplit("/", 1)[1]

        inbox = steward.get("/agreements")
        assert agreement_id in inbox.text.split('id="received-title"')[0]
        steward.post_form(f"{agreement_path}/approve", {"reason": ""}, form_page=agreement_path)
        assert "active" in steward.get(agreement_path).text

        preview = analyst.get(
            "/catalog/health.flu_cases",
            params={"preview": "1", "purpose": "emergency_response"},
        )
        assert "First rows" in preview.text
        assert "Person 1" not in preview.text  # patient_name was not granted
        assert '<th scope="col">zip' in preview.text

        no_reason = steward.post_form(
            f"{agreement_path}/revoke", {"reason": ""}, form_page=agreement_path
        )
        assert no_reason.status_code == 422
        assert 'id="f-reason-error"' in no_reason.text
        revoked = steward.post_form(
            f"{agreement_path}/revoke",
            {"reason": "Season over; access no longer needed."},
            form_page=agreement_path,
        )
        assert revoked.status_code == 303

        refused = analyst.get(
            "/catalog/health.flu_cases",
            params={"preview": "1", "purpose": "emergency_response"},
        )
        assert "First rows" not in refused.text
        assert 'role="alert"' in refused.text

        page = steward.get(agreement_path)
        assert "revoked" in page.text
        assert "Season over" in page.text
        history = page.text.split('id="history-title"')[1]
        # What was read under the agreement before the revocation stays on record.
        assert "query.run" in history
        assert "agreement.approve" in history
        assert "agreement.revoke" in history
        odrl = steward.get(f"{agreement_path}/odrl.json")
        assert odrl.status_code == 200
        document = json.loads(odrl.text)
        assert "permission" in document


def test_only_the_provider_steward_may_decide(hub: HubProcess) -> None:
    analyst = staff_client(hub, "analyst", "fire_ems")
    with analyst:
        sent = analyst.post_form(
            "/agreements/new",
            _request_form(title="Second request"),
            form_page="/agreements/new?dataset=health.flu_cases",
        )
        path = sent.headers["location"]
        attempt = analyst.post_form(f"{path}/approve", {"reason": ""}, form_page=path)
    assert attempt.status_code == 403
    assert "text/html" in attempt.headers["content-type"]
