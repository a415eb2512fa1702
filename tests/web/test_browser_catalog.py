"""Catalog and open-data pages in Chromium: live search, dataset page, chart, axe, 320 px."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.support.hubproc import HubProcess
from tests.web.browser import open_tab
from tests.web.seed import seed_catalog

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hub(hub_process: HubProcess) -> HubProcess:
    seed_catalog(hub_process)
    return hub_process


def test_open_data_search_updates_live(browser: Browser, hub: HubProcess) -> None:
    with open_tab(browser, hub.base_url) as tab:
        tab.goto("/open-data")
        page = tab.page
        expect(page.get_by_role("link", name="Bicycle counter readings")).to_be_visible()
        tab.look("open-data")
        page.get_by_label("Search datasets").fill("nothing-like-this")
        expect(page.get_by_text("No dataset matches")).to_be_visible()
        expect(page.get_by_label("Search datasets")).to_be_focused()
        assert "q=nothing-like-this" in page.url  # the search is bookmarkable
        page.get_by_label("Search datasets").fill("bicycle")
        expect(page.get_by_role("link", name="Bicycle counter readings")).to_be_visible()
        tab.assert_clean()


def test_open_dataset_page_with_chart_and_preview(browser: Browser, hub: HubProcess) -> None:
    with open_tab(browser, hub.base_url) as tab:
        tab.goto("/open-data/transport.bike_counts")
        page = tab.page
        expect(page.get_by_role("heading", level=1)).to_have_text("Bicycle counter readings")
        tab.look("open-dataset")
        page.get_by_label("Chart a column").select_option("day")
        page.get_by_role("button", name="Draw the chart").click()
        expect(page.locator(".chart svg")).to_be_visible()
        page.get_by_role("button", name="Show the first rows").click()
        expect(page.get_by_role("table").filter(has_text="First rows")).to_be_visible()
        tab.look("open-dataset-chart-preview")
        with page.expect_download() as download:
            page.get_by_role("link", name="CSV").click()
        assert download.value.suggested_filename == "bike_counts.csv"
        tab.assert_clean()


def test_staff_catalog_and_restricted_dataset(browser: Browser, hub: HubProcess) -> None:
    login = hub.login("analyst", "fire_ems")
    with open_tab(browser, hub.base_url) as tab:
        page = tab.page
        tab.goto("/catalog")
        page.get_by_label("Email address").fill(login.email)
        page.get_by_label("Password").fill(login.password)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Catalog")
        tab.look("catalog")
        page.get_by_role("link", name="Influenza case reports").click()
        expect(page.get_by_text("PII: name")).to_be_visible()
        tab.look("dataset")
        page.get_by_label("Purpose").select_option("emergency_response")
        page.get_by_role("button", name="Show the first rows").click()
        expect(page.get_by_role("alert")).to_be_visible()
        tab.look("dataset-refused")
