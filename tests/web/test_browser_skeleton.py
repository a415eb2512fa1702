"""The portal skeleton in a real Chromium: home, login, errors; keyboard, axe and 320 px."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.support.hubproc import HubProcess
from tests.web.browser import open_tab

pytestmark = pytest.mark.browser


def test_home_page(browser: Browser, hub_process: HubProcess) -> None:
    with open_tab(browser, hub_process.base_url) as tab:
        tab.goto("/")
        expect(tab.page.get_by_role("heading", level=1)).to_contain_text("Share public-sector")
        expect(tab.page.get_by_role("navigation", name="Main")).to_be_visible()
        tab.look("home")


def test_skip_link_is_the_first_stop_and_moves_focus_to_main(
    browser: Browser, hub_process: HubProcess
) -> None:
    with open_tab(browser, hub_process.base_url) as tab:
        tab.goto("/")
        tab.page.keyboard.press("Tab")
        skip = tab.page.get_by_role("link", name="Skip to main content")
        expect(skip).to_be_focused()
        expect(skip).to_be_in_viewport()
        tab.page.keyboard.press("Enter")
        expect(tab.page.locator("main")).to_be_focused()
        tab.assert_clean()


def test_login_by_keyboard_then_logout(browser: Browser, hub_process: HubProcess) -> None:
    login = hub_process.login("steward", "health")
    with open_tab(browser, hub_process.base_url) as tab:
        tab.goto("/login")
        tab.look("login")
        page = tab.page
        page.get_by_label("Email address").focus()
        page.keyboard.type(login.email)
        page.keyboard.press("Tab")
        expect(page.get_by_label("Password")).to_be_focused()
        page.keyboard.type(login.password)
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="Log in")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.get_by_text(f"Welcome, {login.email}")).to_be_visible()
        tab.look("home-logged-in")
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("link", name="Log in", exact=True)).to_be_visible()
        tab.assert_clean()


def test_login_errors_sit_next_to_their_fields(browser: Browser, hub_process: HubProcess) -> None:
    login = hub_process.login("analyst", "police")
    with open_tab(browser, hub_process.base_url) as tab:
        tab.goto("/login")
        page = tab.page
        page.get_by_label("Email address").fill(login.email)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#f-password-error")).to_have_text("Error: Enter your password.")
        expect(page.get_by_label("Email address")).to_have_value(login.email)
        expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
        tab.look("login-error")
        page.get_by_label("Password").fill("definitely-not-it")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_contain_text("wrong email or password")
        expect(page.get_by_label("Email address")).to_have_value(login.email)
        tab.assert_clean()


def test_error_page(browser: Browser, hub_process: HubProcess) -> None:
    with open_tab(browser, hub_process.base_url) as tab:
        response = tab.goto("/no-such-page")
        assert response.status == 404
        expect(tab.page.get_by_role("heading", level=1)).to_have_text("Not found")
        tab.look("error-404")
