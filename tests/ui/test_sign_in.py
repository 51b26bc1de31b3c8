"""Signing in and out of the web UI in a real browser."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.support.gateway import RunningGateway
from tests.ui.browser import PHONE, screenshot, sign_in


def test_sign_in_overview_and_sign_out(new_page: Callable[..., Page], ui_gateway: RunningGateway) -> None:
    page = new_page()
    page.goto(ui_gateway.url + "/?from=bookmark")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=/%3Ffrom%3Dbookmark$"))
    screenshot(page, "sign-in")

    page.get_by_label("Admin token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That admin token is not valid.")

    page.get_by_label("Admin token").fill(ui_gateway.admin_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(ui_gateway.url + "/?from=bookmark")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_role("link", name="Add an LLM provider")).to_be_visible()
    screenshot(page, "overview")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/sign-in$"))
    page.goto(ui_gateway.url + "/")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=/$"))


def test_next_path_never_leaves_the_site(new_page: Callable[..., Page], ui_gateway: RunningGateway) -> None:
    page = new_page()
    page.goto(ui_gateway.url + "/sign-in?next=//evil.example/")
    page.get_by_label("Admin token").fill(ui_gateway.admin_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(ui_gateway.url + "/")


def test_overview_fits_a_phone(new_page: Callable[..., Page], ui_gateway: RunningGateway) -> None:
    page = new_page(PHONE)
    sign_in(page, ui_gateway.url, ui_gateway.admin_token)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the overview scrolls sideways on a phone ({width}px)"
    screenshot(page, "overview-phone")


def test_pages_cannot_be_framed(admin_page: Page, ui_gateway: RunningGateway) -> None:
    response = admin_page.goto(ui_gateway.url + "/")
    assert response is not None
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
