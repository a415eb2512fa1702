"""Driving the machine's Chromium with Playwright: launch, accessibility checks, screenshots.

The browser is Debian's ``chromium`` (never a downloaded build). Under ``CI=true`` a missing
Chromium fails the run; elsewhere the browser tests skip with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Response,
    expect,
    sync_playwright,
)

from tests.support.hubproc import HubProcess

CHROMIUM = Path(os.environ.get("CIVICSHARE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-output" / "screenshots"
AXE_SOURCE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
# WCAG 2.1 A and AA, plus axe's best practices (landmarks, one h1, regions).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
BLOCKING_IMPACTS = {"serious", "critical"}
DESKTOP = {"width": 1280, "height": 900}
NARROW = {"width": 320, "height": 720}


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if IN_CI:
        pytest.fail(message + " — CI must run the browser tests", pytrace=False)
    pytest.skip(message)


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    require_chromium()
    args = list(CHROMIUM_ARGS)
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to sandbox itself as root
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=args
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    """A page plus what went wrong in it: console errors and Content-Security-Policy breaches."""

    page: Page
    base_url: str
    problems: list[str] = field(default_factory=list)

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base_url + path)

    def check_accessibility(self, name: str) -> list[dict[str, Any]]:
        """Run axe-core; fail on serious or critical violations. Returns all violations."""
        if not self.page.evaluate("() => typeof window.axe !== 'undefined'"):
            self.page.evaluate(AXE_SOURCE)
        result = self.page.evaluate(
            "(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
        )
        violations: list[dict[str, Any]] = result["violations"]
        blocking = [v for v in violations if v.get("impact") in BLOCKING_IMPACTS]
        assert not blocking, f"{name}: " + "; ".join(
            f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(str(node["target"]) for node in v["nodes"][:3])
            for v in blocking
        )
        return violations

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def fits_width(self) -> bool:
        """No horizontal scrolling of the whole page (tables scroll inside their own box)."""
        return bool(
            self.page.evaluate(
                "() => document.documentElement.scrollWidth <= window.innerWidth + 1"
            )
        )

    def assert_clean(self) -> None:
        assert not self.problems, "\n".join(self.problems)

    def look(self, name: str, *, narrow: bool = True) -> None:
        """The checks every page type gets: axe at desktop and at 320 px, screenshots, width."""
        self.check_accessibility(name)
        self.screenshot(name)
        if narrow:
            self.page.set_viewport_size(NARROW)
            self.check_accessibility(name + " at 320px")
            assert self.fits_width(), f"{name} scrolls sideways at 320 px"
            self.screenshot(name + "-320")
            self.page.set_viewport_size(DESKTOP)
        self.assert_clean()


@contextmanager
def open_tab(browser: Browser, base_url: str) -> Iterator[Tab]:
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    tab = Tab(page, base_url)

    def on_console(message: ConsoleMessage) -> None:
        # Chromium logs every 4xx document as an error; failed assets are caught below instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            tab.problems.append(f"console error: {message.text}")

    def on_response(response: Response) -> None:
        if response.status >= 500 or (
            response.status >= 400 and response.request.resource_type != "document"
        ):
            tab.problems.append(f"{response.status} for {response.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
    try:
        yield tab
    finally:
        context.close()


@contextmanager
def logged_in_tab(browser: Browser, hub: HubProcess, role: str, agency: str) -> Iterator[Tab]:
    """A tab logged in through the login page as the demo login of that role and agency."""
    login = hub.login(role, agency)
    with open_tab(browser, hub.base_url) as tab:
        tab.goto("/login")
        tab.page.get_by_label("Email address").fill(login.email)
        tab.page.get_by_label("Password").fill(login.password)
        tab.page.get_by_role("button", name="Log in").click()
        expect(tab.page.get_by_text(f"Welcome, {login.email}")).to_be_visible()
        yield tab
