"""My agency pages in Chromium: DESIGN.md scenario 3 from a real sensor file, and uploads whose
validation report (per-rule counts, quarantined rows) arrives without a page reload."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import IN_CI, REALDATA
from tests.support.hubproc import HubProcess
from tests.web.agency_steps import steward_tab, upload_through_page
from tests.web.browser import open_tab
from tests.web.test_agency_pages import BIG, COUNTS, PLANTED, small_hub

pytestmark = pytest.mark.browser
__all__ = ["small_hub"]  # the fixture of a hub with a 4 KiB upload limit

BIKES = REALDATA / "seattle-bike-counters" / "raw" / "58th-st.json"
SAMPLE_RECORDS = 500


@pytest.fixture(scope="module")
def hub(hub_process: HubProcess) -> HubProcess:
    with hub_process.as_role("steward", "transport") as steward:
        created = steward.post("/api/v1/datasets", json={**COUNTS, "slug": "planted_browser"})
        assert created.status_code == 201, created.text
    return hub_process


@pytest.fixture
def bike_records() -> list[dict[str, str]]:
    if not BIKES.exists():
        message = f"real data missing: {BIKES}"
        if IN_CI:
            pytest.fail(message + " — CI runs beside ../shared/realdata", pytrace=False)
        pytest.skip(message)
    records: list[dict[str, str]] = json.loads(BIKES.read_text())
    return records


def _keep_page_marker(page: Page) -> None:
    """A mark on the window that a full page load would wipe out."""
    page.evaluate("() => { window.__sameDocument = true; }")


def _same_page(page: Page) -> bool:
    return bool(page.evaluate("() => window.__sameDocument === true"))


def test_scenario_3_transport_publishes_sensor_readings_as_open_data(
    browser: Browser, hub: HubProcess, bike_records: list[dict[str, str]], tmp_path: Path
) -> None:
    # The steward starts from a sample: the first readings of the real counter file.
    sample = tmp_path / "58th-st-sample.json"
    sample.write_text(json.dumps(bike_records[:SAMPLE_RECORDS]))
    with steward_tab(browser, hub, "transport") as tab:
        page = tab.page
        page.get_by_role("navigation", name="Main").get_by_role("link", name="My agency").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("My agency: transport")
        tab.look("my-agency")
        page.get_by_role("link", name="Create a dataset").click()
        page.wait_for_load_state("load")  # htmx ready: the proposal must arrive in place
        tab.look("my-agency-new")
        page.get_by_label("Data file").set_input_files(str(sample))
        _keep_page_marker(page)
        page.get_by_role("button", name="Propose a schema from the file").click()
        expect(page.get_by_label("Classification of east")).to_be_visible()
        assert _same_page(page)  # the proposal arrived in place; the chosen file is kept
        expect(page.get_by_label("Title")).to_be_visible()
        tab.look("my-agency-new-proposal")

        # Review: every column of a bike counter is fit for open data.
        page.get_by_label("Title").fill("Bike counts on NW 58th St Greenway")
        page.get_by_label("Short name").fill("bikes_58th")
        page.get_by_label("Description").fill("Hourly counts of the 58th St bike counter.")
        page.get_by_label("Theme").fill("transport")
        page.get_by_label("Licence").fill("PDDL-1.0")
        for column in ("date", "east", "nw_58th_st_greenway_st_22nd_ave_nw_total", "west"):
            page.get_by_label(f"Classification of {column}").select_option("public")
        page.get_by_role("checkbox", name="required date").check()
        page.get_by_label("Visibility").select_option("public")
        page.get_by_role("button", name="Create the dataset").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Upload of 58th-st-sample.json")
        expect(page.get_by_text(f"Stored as version 1: {SAMPLE_RECORDS} of")).to_be_visible()
        tab.look("my-agency-ingest")

        # Then the whole file replaces the sample; the report arrives in place.
        upload_through_page(tab, "bikes_58th", BIKES, mode="replace")
        expect(page.get_by_text(f"{len(bike_records):,} of {len(bike_records):,} rows accepted"))
        versions = page.get_by_role("region", name="Version history")
        expect(versions.get_by_role("cell", name="replace", exact=True)).to_be_visible()
        expect(versions.get_by_role("link", name="58th-st.json")).to_be_visible()
        tab.look("my-agency-dataset-report")

    # An anonymous visitor finds it in the open-data portal, charts it and downloads it.
    with open_tab(browser, hub.base_url) as visitor:
        page = visitor.page
        visitor.goto("/open-data")
        page.get_by_label("Search datasets").fill("greenway")
        page.get_by_role("link", name="Bike counts on NW 58th St Greenway").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Bike counts on NW 58th St Greenway"
        )
        page.get_by_label("Chart a column").select_option("date")
        page.get_by_role("button", name="Draw the chart").click()
        expect(page.locator(".chart svg")).to_be_visible()
        with page.expect_download() as download:
            page.get_by_role("link", name="CSV").click()
        rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))

        # The download is the whole dataset: every reading of the file, hour and count.
        def reading(date: str, east: str | None) -> tuple[str, str]:
            return date[:19].replace("T", " "), str(int(float(east))) if east else ""

        assert Counter(reading(r["date"], r["east"]) for r in rows) == Counter(
            reading(r["date"], r.get("east")) for r in bike_records
        )
        visitor.assert_clean()


def _rule_counts(page: Page) -> dict[str, str]:
    table = page.get_by_role("region", name="Rejections by rule")
    counts: dict[str, str] = {}
    for row in table.get_by_role("row").all()[1:]:
        rule, count = (cell.inner_text().strip() for cell in row.locator("th, td").all())
        counts[rule] = count
    return counts


def test_planted_errors_are_counted_per_rule_and_quarantined(
    browser: Browser, hub: HubProcess, tmp_path: Path
) -> None:
    planted_file = tmp_path / "planted.csv"
    planted_file.write_text(PLANTED)
    with steward_tab(browser, hub, "transport") as tab:
        page = tab.page
        tab.goto("/my-agency/planted_browser")
        tab.look("my-agency-dataset")
        _keep_page_marker(page)
        upload_through_page_in_place(page, planted_file, "50")
        assert _same_page(page)  # the report came as a partial, not a page load
        assert _rule_counts(page) == {"type": "2", "required": "1", "enum": "3", "minimum": "1"}
        expect(page.get_by_text("13 of 20 rows accepted, 7 rejected")).to_be_visible()
        quarantine = page.get_by_role("table", name="Quarantined rows")
        planted = {"many": 1, "lots": 1, "nowhere": 2, "elsewhere": 1, "-5": 1}
        for value, times in planted.items():
            expect(quarantine.get_by_role("cell", name=value, exact=True)).to_have_count(times)
        versions = page.get_by_role("region", name="Version history")
        stored = versions.get_by_role("row").count()
        tab.look("my-agency-upload-report")

        # The same file with a 5 % limit: rejected, nothing stored, the history unchanged.
        upload_through_page_in_place(page, planted_file, "5")
        expect(page.get_by_role("alert")).to_contain_text("Nothing was stored")
        assert _same_page(page)
        assert versions.get_by_role("row").count() == stored
        tab.look("my-agency-upload-rejected")

        # A bad answer is shown at its field, and the typed value is kept.
        page.get_by_label("Largest share of rejected rows, in percent").fill("lots")
        page.get_by_role("button", name="Upload and validate").click()
        expect(page.locator("#f-max_error_percent-error")).to_be_visible()
        percent = page.get_by_label("Largest share of rejected rows, in percent")
        expect(percent).to_have_value("lots")
        # That answer is a 422 on purpose (htmx swaps it in); anything else is still a problem.
        tab.problems[:] = [p for p in tab.problems if not p.startswith("422 for ")]
        tab.look("my-agency-upload-error")


def upload_through_page_in_place(page: Page, file: Path, percent: str) -> None:
    page.get_by_label("Data file").set_input_files(str(file))
    page.get_by_label("Largest share of rejected rows, in percent").fill(percent)
    page.get_by_role("button", name="Upload and validate").click()
    expect(page.get_by_role("heading", name=f"Validation report: {file.name}")).to_be_visible()
    expect(page.locator(".htmx-request")).to_have_count(0)


def test_a_file_over_the_limit_is_refused_before_it_is_sent(
    browser: Browser, small_hub: HubProcess, tmp_path: Path
) -> None:
    big = tmp_path / "big.csv"
    big.write_bytes(BIG)
    with steward_tab(browser, small_hub, "transport") as tab:
        page = tab.page
        tab.goto("/my-agency/new")
        sent: list[str] = []
        page.on("request", lambda request: sent.append(request.url))
        page.get_by_label("Data file").set_input_files(str(big))
        page.get_by_role("button", name="Propose a schema from the file").click()
        expect(page.get_by_role("alert")).to_contain_text("larger than the hub accepts (4.0 KB)")
        expect(page.get_by_label("Data file")).to_be_focused()
        assert not [url for url in sent if url.endswith("/upload")]
        tab.look("my-agency-too-large", narrow=False)
