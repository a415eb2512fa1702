"""Steps of a data steward on the My agency pages, shared by the browser tests."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.support.hubproc import HubProcess
from tests.web.browser import Tab, logged_in_tab


def steward_tab(browser: Browser, hub: HubProcess, agency: str) -> AbstractContextManager[Tab]:
    """A tab logged in as the agency's data steward, on the home page."""
    return logged_in_tab(browser, hub, "steward", agency)


def upload_through_page(
    tab: Tab, slug: str, file: Path, *, mode: str = "append", max_error_percent: str = "5"
) -> None:
    """Upload ``file`` on the dataset's My agency page and wait for its validation report."""
    page = tab.page
    tab.goto(f"/my-agency/{slug}")
    page.get_by_label("Data file").set_input_files(str(file))
    page.get_by_label("What the file does").select_option(mode)
    page.get_by_label("Largest share of rejected rows, in percent").fill(max_error_percent)
    page.get_by_role("button", name="Upload and validate").click()
    expect(page.get_by_role("heading", name=f"Validation report: {file.name}")).to_be_visible()
