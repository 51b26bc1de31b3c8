"""Per-user consent in a real browser, as two people, and the admin revoking one of their grants.

Alice and Bob each run an MCP client (registered by RFC 7591, PKCE S256, loopback redirect). Each
goes through Heimdall's consent in their own browser: identity (their virtual key), services
(Connect → Heimdall's handoff page → the upstream's login → back, connected), Finish. The client
receives the code on its loopback server, exchanges it, and calls the upstream's tools on /mcp:
each person sees only their own notes. The admin then finds both grants under Connected services,
filters to Bob's and revokes it; Bob's next call asks him to connect again, and after he does
(the upstream's "connected" page), it works again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.support.gateway import RunningGateway
from tests.ui.browser import PHONE, screenshot, sign_in
from tests.ui.per_user_env import (
    SERVICE,
    VK_NAMES,
    VK_VALUES,
    PerUserEnv,
    call_tool,
    exchange_code,
    grants_of,
    per_user_env,
    start_authorization,
)

LAZY_AUTH = re.compile(rf"^Authentication required for {SERVICE}\. Open this URL to connect your account: (\S+)$")


@pytest.fixture
def env(gateway_factory: Callable[..., RunningGateway]) -> Iterator[PerUserEnv]:
    with per_user_env(gateway_factory) as running:
        yield running


def sign_in_upstream(page: Page, person: str) -> None:
    """The upstream's own login page (another site, with its own look): pick the demo user."""
    page.get_by_role("button", name=re.compile(rf"Sign in as {person}\b")).click()


def consent(page: Page, env: PerUserEnv, person: str, *, screenshots: bool = False) -> str:
    """Go through consent as ``person``; returns the MCP client's access token."""
    authorization = start_authorization(env)
    page.goto(authorization.url)
    expect(page.get_by_role("heading", name="Notes desktop wants to connect to Heimdall")).to_be_visible()
    expect(page.get_by_role("note").filter(has_text="Application on this computer")).to_be_visible()
    if screenshots:
        screenshot(page, "consent-identity")
    page.get_by_label("Virtual Key").fill(VK_VALUES[person])
    page.get_by_role("button", name="Continue with Virtual Key").click()

    expect(page.get_by_role("heading", name="Connect Your Apps")).to_be_visible()
    expect(page.get_by_text("Connecting as")).to_have_text(f"Connecting as Virtual Key {VK_NAMES[person]}.")
    if screenshots:
        screenshot(page, "consent")
    page.get_by_role("link", name=f"Connect {SERVICE}").click()

    expect(page.get_by_role("heading", name=f'Connect {SERVICE} for virtual key "{VK_NAMES[person]}"')).to_be_visible()
    if screenshots:
        screenshot(page, "consent-handoff")
    page.get_by_role("button", name=f"Continue to {SERVICE}").click()
    sign_in_upstream(page, person)

    expect(page.get_by_role("heading", name="Connect Your Apps")).to_be_visible()
    expect(page.get_by_text("✓ Connected")).to_be_visible()
    if screenshots:
        screenshot(page, "consent-connected")
    page.get_by_role("button", name="Finish Setup").click()
    expect(page.get_by_role("heading", name="Signed in. You can close this tab.")).to_be_visible()
    assert page.url.startswith(env.loopback.redirect_uri + "?")
    return exchange_code(env, authorization, page.url)


def test_two_people_consent_see_only_their_own_notes_and_one_grant_is_revoked(
    env: PerUserEnv, new_page: Callable[..., Page]
) -> None:
    gateway = env.gateway
    alice_page, bob_page = new_page(), new_page()
    alice = consent(alice_page, env, "alice", screenshots=True)
    bob = consent(bob_page, env, "bob")

    # Each MCP client acts with its own person's upstream account.
    assert call_tool(env, alice, f"{SERVICE}-whoami").text == "alice"
    assert call_tool(env, bob, f"{SERVICE}-whoami").text == "bob"
    assert not call_tool(env, alice, f"{SERVICE}-add_note", text="alice's shopping list").is_error
    assert not call_tool(env, bob, f"{SERVICE}-add_note", text="bob's secret plan").is_error
    assert call_tool(env, alice, f"{SERVICE}-list_notes").structured == {"result": ["alice's shopping list"]}
    assert call_tool(env, bob, f"{SERVICE}-list_notes").structured == {"result": ["bob's secret plan"]}

    # The admin sees both grants, narrows to Bob's, and revokes it.
    admin = new_page()
    sign_in(admin, gateway.url, gateway.admin_token, "/connected-services")
    table = admin.get_by_role("table")
    expect(table.get_by_role("row")).to_have_count(3)
    for person in ("alice", "bob"):
        row = table.get_by_role("row").filter(has_text=VK_NAMES[person])
        expect(row).to_contain_text(SERVICE)
        expect(row).to_contain_text("active")
        expect(row).to_contain_text("Virtual key")
    screenshot(admin, "connected-services")

    admin.get_by_label("Identity").fill(VK_NAMES["bob"])
    admin.get_by_role("button", name="Filter").click()
    expect(admin).to_have_url(re.compile(r"/connected-services\?service=&identity=bob-key$"))
    expect(table.get_by_role("row")).to_have_count(2)
    expect(table).to_contain_text(VK_NAMES["bob"])
    expect(table).not_to_contain_text(VK_NAMES["alice"])
    screenshot(admin, "connected-services-filtered")

    admin.get_by_role("button", name=f"Revoke {SERVICE} for {VK_NAMES['bob']}").click()
    expect(admin.get_by_role("status")).to_have_text(
        f'Revoked {SERVICE} for virtual key "{VK_NAMES["bob"]}". The next call asks to connect the account again.'
    )
    expect(admin).to_have_url(re.compile(r"/connected-services\?identity=bob-key$"))
    expect(admin.get_by_text("No grants match these filters")).to_be_visible()
    admin.get_by_role("link", name="Clear filters").click()
    expect(table.get_by_role("row")).to_have_count(2)
    expect(table).to_contain_text(VK_NAMES["alice"])
    assert [grant["vk_name"] for grant in grants_of(env)] == [VK_NAMES["alice"]]

    # Alice is untouched; Bob's next call asks him to connect his account again.
    assert call_tool(env, alice, f"{SERVICE}-whoami").text == "alice"
    lazy = call_tool(env, bob, f"{SERVICE}-whoami")
    assert lazy.is_error
    link = LAZY_AUTH.match(lazy.text)
    assert link is not None, lazy.text
    bob_page.goto(link.group(1))
    bob_page.get_by_role("button", name=f"Continue to {SERVICE}").click()
    sign_in_upstream(bob_page, "bob")
    expect(bob_page.get_by_role("heading", name="Authorization Successful")).to_be_visible()
    screenshot(bob_page, "upstream-connected")
    assert call_tool(env, bob, f"{SERVICE}-list_notes").structured == {"result": ["bob's secret plan"]}


def fits_a_phone(page: Page, what: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{what} scrolls sideways on a phone ({width}px)"


def test_consent_and_connection_pages_fit_a_phone(env: PerUserEnv, new_page: Callable[..., Page]) -> None:
    page = new_page(PHONE)
    page.goto(start_authorization(env).url)
    expect(page.get_by_role("heading", name="Notes desktop wants to connect to Heimdall")).to_be_visible()
    fits_a_phone(page, "the consent's identity step")
    page.get_by_label("Virtual Key").fill(VK_VALUES["alice"])
    page.get_by_role("button", name="Continue with Virtual Key").click()
    expect(page.get_by_role("heading", name="Connect Your Apps")).to_be_visible()
    fits_a_phone(page, "the consent's services step")
    screenshot(page, "consent-phone")
    page.get_by_role("link", name=f"Connect {SERVICE}").click()
    expect(page.get_by_role("button", name=f"Continue to {SERVICE}")).to_be_visible()
    fits_a_phone(page, "the handoff page")
    page.get_by_role("button", name=f"Continue to {SERVICE}").click()
    sign_in_upstream(page, "alice")
    expect(page.get_by_text("✓ Connected")).to_be_visible()

    # The user's own page lists the same connection.
    page.goto(env.gateway.url + "/oauth/connections")
    fits_a_phone(page, "the connections sign-in page")
    page.get_by_label("Virtual Key").fill(VK_VALUES["alice"])
    page.get_by_role("button", name="Sign in with Virtual Key").click()
    expect(page.get_by_role("heading", name=re.compile("Services for"))).to_be_visible()
    expect(page.get_by_text("✓ Connected")).to_be_visible()
    fits_a_phone(page, "the connections page")
    screenshot(page, "connections-phone")
