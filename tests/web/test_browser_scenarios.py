"""DESIGN.md §1 scenarios walked through the portal in Chromium, as far as the pages go.

Scenario 4 end to end: a steward uploads the data on the My agency page, an analyst of another
agency requests access, the steward approves, the analyst reads under the agreement and
downloads, the steward revokes, the analyst is refused at once, and the agreement's history
still shows what was read.
Scenario 3: the public browses, charts and downloads open data (see test_browser_catalog).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.support.hubproc import HubProcess
from tests.web.agency_steps import upload_through_page
from tests.web.browser import Tab
from tests.web.browser import logged_in_tab as logged_in
from tests.web.seed import BIKES, BIKES_CSV, CASES, CASES_CSV, create_dataset, create_with_data

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hub(hub_process: HubProcess) -> HubProcess:
    create_with_data(hub_process, BIKES, BIKES_CSV)
    create_dataset(hub_process, CASES)  # its data comes through the steward's upload page
    return hub_process


def _preview(tab: Tab) -> None:
    tab.goto("/catalog/health.flu_cases")
    tab.page.get_by_label("Purpose").select_option("emergency_response")
    tab.page.get_by_role("button", name="Show the first rows").click()


def test_revoked_agreement_stops_access_at_once(
    browser: Browser, hub: HubProcess, tmp_path: Path
) -> None:
    with (
        logged_in(browser, hub, "analyst", "fire_ems") as analyst,
        logged_in(browser, hub, "steward", "health") as steward,
    ):
        # The steward uploads the case reports on the dataset's My agency page.
        cases = tmp_path / "flu_cases.csv"
        cases.write_text(CASES_CSV)
        upload_through_page(steward, "flu_cases", cases)
        expect(steward.page.get_by_text("Stored as version 1")).to_be_visible()

        # The analyst finds the dataset and asks for access.
        a = analyst.page
        analyst.goto("/catalog/health.flu_cases")
        a.get_by_role("link", name="Request access").click()
        expect(a.get_by_role("heading", level=1)).to_contain_text("Request access")
        a.get_by_role("button", name="Send the request").click()
        expect(a.locator("#f-title-error")).to_be_visible()  # nothing filled in yet
        analyst.look("agreement-request-errors")
        a.get_by_label("Title of the agreement").fill("Flu cases for EMS planning")
        a.get_by_label("Purpose").select_option("emergency_response")
        a.get_by_label("Legal basis").fill("Public Health Act s. 12")
        a.get_by_label("Treatment of patient_name").select_option("redact")
        a.get_by_role("checkbox", name="patient_name").uncheck()
        analyst.look("agreement-request")
        a.get_by_role("button", name="Send the request").click()
        expect(a.get_by_text("requested", exact=True)).to_be_visible()
        agreement_url = a.url

        # The steward finds it in the inbox and approves it.
        s = steward.page
        steward.goto("/agreements")
        steward.look("agreements-inbox")
        s.get_by_role("link", name="Flu cases for EMS planning").first.click()
        steward.look("agreement-requested")
        s.get_by_label("Reason").fill("Approved for the flu season.")
        s.get_by_role("button", name="Approve").click()
        expect(s.get_by_text("active", exact=True)).to_be_visible()

        # The analyst reads under the agreement: no names, pseudonymous ids.
        _preview(analyst)
        expect(a.get_by_role("table").filter(has_text="First rows")).to_be_visible()
        expect(a.get_by_text("Person 1", exact=True)).to_have_count(0)
        with a.expect_download() as download:
            a.get_by_role("link", name="CSV").click()
        assert "patient_name" not in download.value.path().read_text().splitlines()[0]

        # The steward revokes; a reason is required and kept on error.
        s.reload()
        s.get_by_role("button", name="Revoke now").click()
        expect(s.locator("#f-reason-error")).to_be_visible()
        steward.look("agreement-revoke-error")
        s.get_by_label("Reason").fill("Season over.")
        s.get_by_role("button", name="Revoke now").click()
        expect(s.get_by_text("revoked", exact=True)).to_be_visible()

        # The very next read is refused; the history proves what was read before.
        _preview(analyst)
        expect(a.get_by_role("alert")).to_be_visible()
        expect(a.get_by_role("table").filter(has_text="First rows")).to_have_count(0)
        analyst.page.goto(agreement_url)
        history = a.get_by_role("region", name="Access history")
        expect(history).to_contain_text("query.run")
        analyst.look("agreement-revoked")


def test_auditor_verifies_the_log(browser: Browser, hub: HubProcess) -> None:
    with logged_in(browser, hub, "auditor", "health") as auditor:
        auditor.page.get_by_role("navigation", name="Main").get_by_role(
            "link", name="Audit"
        ).click()
        expect(auditor.page.get_by_role("heading", level=1)).to_have_text("Audit")
        auditor.look("audit")
        auditor.page.get_by_role(
            "button", name="Verify the whole log against the checkpoint"
        ).click()
        expect(auditor.page.get_by_role("status").filter(has_text="Verified.")).to_be_visible()
        auditor.look("audit-verified")
