"""Browser fixtures: one chromium per test module, a fresh context (cookies) per test.

Module scope, not session scope: while Playwright's sync API is open it keeps an event loop running
in the main thread, which would break every later asyncio test of the run (pytest-asyncio,
``asyncio.run``); closing it after each module hands the thread back.

The browser is Debian's chromium driven by Playwright with ``executable_path``; .ci/system-packages
installs it. Without it the tests are skipped, unless HEIMDALL_REQUIRE_SERVICES=1 (CI), where a
missing browser fails the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.conftest import _unavailable
from tests.support.gateway import RunningGateway
from tests.ui.browser import CHROMIUM, DESKTOP, LAUNCH_ARGS, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        _unavailable("chromium", f"{CHROMIUM} not found (apt-get install chromium, or run .ci/system-packages)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    browser = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
    yield browser
    browser.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Open pages in fresh browser contexts (separate cookie jars: one per person in a test)."""
    contexts = []

    def open_page(viewport: dict[str, int] | None = None) -> Page:
        context = browser.new_context(viewport=viewport or DESKTOP)  # type: ignore[arg-type]
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def ui_gateway(gateway_factory: Callable[..., RunningGateway]) -> RunningGateway:
    return gateway_factory()


@pytest.fixture
def admin_page(new_page: Callable[..., Page], ui_gateway: RunningGateway) -> Page:
    """A page signed in to ``ui_gateway`` as the admin."""
    page = new_page()
    sign_in(page, ui_gateway.url, ui_gateway.admin_token)
    return page
