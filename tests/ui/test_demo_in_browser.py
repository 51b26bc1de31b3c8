"""``heimdall demo`` in a real browser: bob follows the LLM gateway's authorize_url through the handoff
page and the notes login, then the admin signs in with the printed token and finds the grant and the
requests in the web UI."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from heimdall.demo.runner import DEMO_NOTES
from tests.demo.process import Demo, run_demo, run_printed
from tests.ui.browser import screenshot, sign_in


@pytest.fixture
def demo() -> Iterator[Demo]:
    yield from run_demo()


def test_bob_connects_notes_and_the_admin_sees_it(demo: Demo, new_page: Callable[..., Page]) -> None:
    gateway_url = demo.value("Gateway")
    chat = demo.command("curl -s " + gateway_url + "/v1/chat/completions")
    first = run_printed(chat)
    assert first["error"]["type"] == "mcp_auth_required", first

    bob = new_page()
    bob.goto(first["extra_fields"]["mcp_auth_required"]["authorize_url"])
    expect(bob.get_by_role("heading", name='Connect notes for user "bob"')).to_be_visible()
    screenshot(bob, "demo-handoff")
    bob.get_by_role("button", name="Continue to notes").click()
    expect(bob.get_by_role("button", name=re.compile("Sign in as bob"))).to_be_visible()
    screenshot(bob, "demo-notes-login")
    bob.get_by_role("button", name=re.compile("Sign in as bob")).click()
    expect(bob.get_by_role("heading", name="Authorization Successful")).to_be_visible()

    answer = run_printed(chat)["choices"][0]["message"]["content"]
    assert all(note in answer for note in DEMO_NOTES["bob"])
    assert not any(note in answer for note in DEMO_NOTES["alice"])

    admin = new_page()
    sign_in(admin, gateway_url, demo.value("Admin token"), "/connected-services")
    row = admin.get_by_role("row").filter(has_text="bob")
    expect(row).to_contain_text("notes")
    expect(row).to_contain_text("active")
    screenshot(admin, "demo-connected-services")

    admin.get_by_role("link", name="Logs").click()
    expect(admin.get_by_role("row").filter(has_text="for user bob").first).to_contain_text("demo-model")
    screenshot(admin, "demo-logs")
