"""DESIGN.md scenarios 1 and 2 in the query console, in Chromium, with downloads checked.

Scenario 1: a fire_ems analyst counts disease cases by ZIP under the aggregate-only agreement
(small cells suppressed and marked, a chart drawn), and ``SELECT *`` is refused next to the
editor. Scenario 2: a health analyst reads housing applicants under the pseudonymised
agreement (pseudonyms, years only, never a name), explains the policy, is refused under a
wrong purpose, and downloads the rows shown as CSV and Parquet.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow.parquet as pq
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from civicshare.db import utcnow
from civicshare.demo.service import demo_agreements
from tests.support.hubproc import HubProcess
from tests.web.browser import Tab, logged_in_tab
from tests.web.console_seed import seed_city

pytestmark = pytest.mark.browser
# The demo agreements of scenario 1 (aggregate-only counts) and 2 (pseudonymised linkage).
TITLES = {a.purpose: a.title for a in demo_agreements(utcnow())}
COUNTS_AGREEMENT = TITLES["public_health_surveillance"]
LINKAGE_AGREEMENT = TITLES["service_delivery"]

BY_ZIP = "SELECT zip, count(*) AS n\nFROM health.cases\nGROUP BY zip\nORDER BY zip"
APPLICANTS = (
    "SELECT national_id, family_name, date_of_birth, zip, status\n"
    "FROM housing.applications\nORDER BY submitted_on, national_id\nLIMIT 20"
)


@pytest.fixture(scope="module")
def hub(hub_process: HubProcess) -> HubProcess:
    seed_city(hub_process)
    return hub_process


@contextmanager
def console(browser: Browser, hub: HubProcess, agency: str) -> Iterator[Tab]:
    with logged_in_tab(browser, hub, "analyst", agency) as tab:
        tab.page.get_by_role("navigation", name="Main").get_by_role(
            "link", name="Query console"
        ).click()
        expect(tab.page.get_by_role("heading", level=1)).to_have_text("Query console")
        # The heading shows before the deferred scripts have run; a click before htmx is ready
        # would post the form the no-JavaScript way (a whole page, focus at its top).
        tab.page.wait_for_load_state("load")
        yield tab


def _table_entry(page: Page, ref: str, agreement_title: str) -> Locator:
    """A table's entry in the list (a dataset shared twice is listed once per agreement)."""
    return (
        page.get_by_role("complementary")
        .get_by_role("listitem")
        .filter(has=page.get_by_role("link", name=agreement_title))
        .get_by_role("link", name=ref, exact=True)
    )


def _choose_table(page: Page, ref: str, agreement_title: str) -> None:
    """Click a table in the list: its name goes into the (emptied) editor."""
    editor = page.get_by_label("SQL query")
    editor.fill("")
    _table_entry(page, ref, agreement_title).click()
    expect(editor).to_have_value(ref)


def _run(page: Page, sql: str | None = None, button: str = "Run") -> None:
    """Fill in the SQL, press the button, and wait until the answer is swapped in."""
    if sql is not None:
        page.get_by_label("SQL query").fill(sql)
    with page.expect_response(lambda r: r.url.endswith("/console") and r.request.method == "POST"):
        page.get_by_role("button", name=button, exact=True).click()
    # console.js moves focus to what changed once htmx has settled the new content.
    expect(page.locator("#f-sql-error, #result-title, #explain-title")).to_be_focused()


def _result_cells(page: Page) -> list[list[str]]:
    rows: list[list[str]] = page.locator("#console-output table tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells, c => c.innerText.trim()))"
    )
    return rows


def test_scenario1_disease_counts_by_zip(browser: Browser, hub: HubProcess) -> None:
    with console(browser, hub, "fire_ems") as tab:
        page = tab.page
        tab.look("console")
        _choose_table(page, "health.cases", COUNTS_AGREEMENT)
        expect(page.get_by_label("Purpose")).to_have_value("public_health_surveillance")

        _run(page, BY_ZIP)
        heading = page.get_by_role("heading", name="Result", exact=True)
        expect(heading).to_be_focused()  # focus follows the new content
        table = page.get_by_role("table", name="Query result")
        expect(table.get_by_role("columnheader")).to_have_text(["zipstring", "nint64"])
        cells = _result_cells(page)
        released = [row for row in cells if row[1].isdigit()]
        hidden = [row for row in cells if "suppressed" in row[1]]
        assert released  # counts are shown ...
        assert hidden  # ... and small cells are withheld, in words
        assert all(int(row[1]) >= 11 for row in released)
        expect(page.locator("#suppression-legend")).to_contain_text("suppressed (small)")
        expect(page.get_by_text("recorded as audit entry #")).to_be_visible()
        expect(page.locator(".chart")).to_have_attribute("aria-label", "n by zip")
        expect(page.locator(".chart svg")).to_be_visible()
        tab.look("console-results")

        # Row-level output is refused under an aggregate-only agreement, next to the editor.
        _run(page, "SELECT * FROM health.cases")
        error = page.locator("#f-sql-error")
        expect(error).to_be_focused()
        expect(error).to_contain_text("aggregate")
        expect(error.locator("code")).to_have_text("aggregate_only")
        expect(page.get_by_label("SQL query")).to_have_value("SELECT * FROM health.cases")
        expect(page.get_by_role("table", name="Query result")).to_have_count(0)
        tab.look("console-error")


def test_scenario2_pseudonymised_applicants(browser: Browser, hub: HubProcess) -> None:
    with hub.as_role("steward", "housing") as steward:
        raw = steward.post(
            "/api/v1/query",
            json={"sql": "SELECT DISTINCT family_name FROM housing.applications"},
        )
    assert raw.status_code == 200, raw.text
    names = {row[0] for row in raw.json()["rows"] if row[0]}
    assert names

    with console(browser, hub, "health") as tab:
        page = tab.page
        _choose_table(page, "housing.applications", LINKAGE_AGREEMENT)
        expect(page.get_by_label("Purpose")).to_have_value("service_delivery")

        _run(page, APPLICANTS)
        cells = _result_cells(page)
        assert len(cells) == 20
        for national_id, family_name, born, _zip, _status in cells:
            assert national_id.startswith("p_")
            assert family_name.startswith("p_")
            assert len(born) == 4
            assert born.isdigit()
        text = page.locator("main").inner_text()
        # Never a name (as a whole word: short names such as "Ho" hide inside other words).
        assert not [name for name in names if re.search(rf"\b{re.escape(name)}\b", text)]

        # The effective policy: the agreement's treatments, nothing run.
        _run(page, button="Explain")
        policy = page.get_by_role("table", name="Granted columns of housing.applications")
        expect(policy.get_by_role("row", name="national_id pseudonym")).to_be_visible()
        expect(policy.get_by_role("row", name="family_name pseudonym")).to_be_visible()
        expect(policy.get_by_role("row", name="date_of_birth year_only")).to_be_visible()
        expect(page.get_by_role("heading", name="Effective policy")).to_be_focused()
        tab.look("console-explain")

        # A purpose the agreement does not name is refused.
        page.get_by_label("Purpose").select_option("research")
        _run(page)
        expect(page.locator("#f-sql-error code")).to_have_text("wrong_purpose")
        expect(page.get_by_label("SQL query")).to_have_value(APPLICANTS)


def test_analyst_queries_and_downloads(browser: Browser, hub: HubProcess) -> None:
    with console(browser, hub, "health") as tab:
        page = tab.page
        page.get_by_label("Purpose").select_option("service_delivery")
        _run(page, APPLICANTS)
        shown = _result_cells(page)
        assert shown

        with page.expect_download() as csv_download:
            page.get_by_role("button", name="Download CSV").click()
        assert csv_download.value.suggested_filename.endswith(".csv")
        with csv_download.value.path().open(newline="") as handle:
            rows = list(csv.reader(handle))
        assert rows[0] == ["national_id", "family_name", "date_of_birth", "zip", "status"]
        assert rows[1:] == shown

        with page.expect_download() as parquet_download:
            page.get_by_role("button", name="Download Parquet").click()
        assert parquet_download.value.suggested_filename.endswith(".parquet")
        table = pq.read_table(io.BytesIO(parquet_download.value.path().read_bytes()))
        assert [[str(v) for v in row.values()] for row in table.to_pylist()] == shown
        tab.assert_clean()


def test_console_works_without_javascript(browser: Browser, hub: HubProcess) -> None:
    login = hub.login("analyst", "fire_ems")
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(hub.base_url + "/login")
        page.get_by_label("Email address").fill(login.email)
        page.get_by_label("Password").fill(login.password)
        page.get_by_role("button", name="Log in").click()
        page.goto(hub.base_url + "/console")
        # Without the script, a table's link loads the console with a starter query.
        _table_entry(page, "health.cases", COUNTS_AGREEMENT).click()
        expect(page.get_by_label("SQL query")).to_contain_text("FROM health.cases")
        expect(page.get_by_label("Purpose")).to_have_value("public_health_surveillance")
        page.get_by_role("button", name="Run", exact=True).click()
        expect(page.get_by_role("table", name="Query result")).to_be_visible()
        expect(page.get_by_text("recorded as audit entry #")).to_be_visible()
        page.get_by_label("SQL query").fill("SELECT * FROM health.cases")
        page.get_by_role("button", name="Run", exact=True).click()
        expect(page.locator("#f-sql-error code")).to_have_text("aggregate_only")
    finally:
        context.close()
