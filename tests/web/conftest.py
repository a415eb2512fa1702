"""Fixtures of the portal's browser tests: one Chromium per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.web.browser import launch_chromium


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with launch_chromium() as chromium:
        yield chromium
