"""The MCP servers section in a real browser, against real upstream MCP servers.

Plain SDK servers (``tests/support/mcp_servers.py``), the stdio test server, and an SDK server
behind its own OAuth authorization server whose login page offers alice and bob
(``start_oauth_mcp_upstream``). The OAuth sign-ins run in a real popup.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from sqlalchemy import update

from heimdall.store.mcp_models import OAuthConfigRow
from tests.per_user.conftest import add_per_user_client
from tests.support.gateway import RunningGateway
from tests.support.mcp_servers import UpstreamServer
from tests.support.oauth_mcp_upstream import OAuthMCPUpstream, start_oauth_mcp_upstream
from tests.ui.browser import DESKTOP, PHONE, screenshot, sign_in
from tests.ui.store_access import run_sql_at

pytestmark = pytest.mark.browser

STDIO_SERVER = Path(__file__).resolve().parents[1] / "support" / "stdio_mcp_server.py"
DEAD_URL = "http://127.0.0.1:9/mcp"
HEADER_SECRET = "hdr-secret-5d1e7a93c2"
ENV_SECRET = "env-secret-0b4f8e61a7"
NOTES_TOOLS = ("whoami", "add_note", "list_notes")


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer("http") as server:
        yield server


@pytest.fixture
def oauth_upstream() -> Iterator[OAuthMCPUpstream]:
    server = start_oauth_mcp_upstream()
    yield server
    server.stop()


def clients(gateway: RunningGateway) -> list[dict[str, Any]]:
    with gateway.admin() as api:
        response = api.get("/api/mcp/clients")
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["clients"]
    return listed


def only_client(gateway: RunningGateway) -> dict[str, Any]:
    listed = clients(gateway)
    assert len(listed) == 1, listed
    return listed[0]


def fill_basics(page: Page, name: str, url: str, auth: str) -> None:
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    page.get_by_label("Server URL").fill(url)
    page.get_by_label(auth, exact=True).check()


def sign_in_in_popup(page: Page, name: str, *, user: str = "alice", button: str | None = None) -> None:
    """Click the sign-in button, pick ``user`` on the upstream's login page in the popup; it closes."""
    with page.expect_popup() as opened:
        page.get_by_role("link", name=button or f"Sign in with {name}").click()
    popup = opened.value
    expect(popup.get_by_role("button", name=re.compile(user, re.IGNORECASE))).to_be_visible()
    with popup.expect_event("close"):
        popup.get_by_role("button", name=re.compile(user, re.IGNORECASE)).click()


# --- adding ------------------------------------------------------------------------------------


def test_add_an_http_server_and_see_it_connected(
    admin_page: Page, ui_gateway: RunningGateway, upstream: UpstreamServer
) -> None:
    page = admin_page
    page.goto(ui_gateway.url + "/mcp-servers")
    expect(page.get_by_text("No MCP servers yet")).to_be_visible()
    expect(page.get_by_text("its tools appear on /mcp and on the LLM gateway")).to_be_visible()
    page.get_by_role("link", name="Add MCP server").click()
    expect(page).to_have_url(ui_gateway.url + "/mcp-servers/new")
    # Sections of other connection and auth types are hidden until chosen.
    expect(page.get_by_label("Command", exact=True)).to_be_hidden()
    expect(page.get_by_label("Client ID")).to_be_hidden()
    page.get_by_label("OAuth per user").check()
    expect(page.get_by_label("Client ID")).to_be_visible()
    page.get_by_label("None", exact=True).check()
    screenshot(page, "mcp-servers-new")

    fill_basics(page, "notes", upstream.url, "None")
    page.get_by_role("button", name="Add server").click()

    client = only_client(ui_gateway)
    expect(page).to_have_url(f"{ui_gateway.url}/mcp-servers/{client['config']['client_id']}")
    expect(page.get_by_role("status")).to_contain_text("Added notes")
    expect(page.locator(".mcp-state")).to_contain_text("Connected")
    expect(page.get_by_role("heading", name=re.compile(r"Tools \(7\)"))).to_be_visible()
    expect(page.get_by_role("cell", name="echo", exact=True)).to_be_visible()
    assert client["state"] == "connected" and client["tool_count"] == 7

    page.get_by_role("link", name="All MCP servers").click()
    row = page.get_by_role("row", name=re.compile("notes"))
    expect(row).to_contain_text("Connected")
    expect(row.get_by_role("cell", name="7", exact=True)).to_be_visible()


def test_a_refused_connection_shows_the_error_and_its_reason(admin_page: Page, ui_gateway: RunningGateway) -> None:
    page = admin_page
    page.goto(ui_gateway.url + "/mcp-servers/new")
    fill_basics(page, "offline", DEAD_URL, "None")
    page.get_by_role("button", name="Add server").click()
    client = only_client(ui_gateway)
    assert client["state"] in ("error", "disconnected") and client["state_reason"], client
    state = page.locator(".mcp-state")
    expect(state).to_contain_text(re.compile("Error|Disconnected"))
    expect(state.locator(".badge-reason")).not_to_be_empty()
    expect(page.get_by_text("The tools appear once the server is connected.")).to_be_visible()


def test_invalid_input_is_shown_inline_and_saves_nothing(admin_page: Page, ui_gateway: RunningGateway) -> None:
    page = admin_page
    page.goto(ui_gateway.url + "/mcp-servers/new")
    fill_basics(page, "has-hyphen", "http://127.0.0.1:9/mcp", "Headers")
    page.get_by_label("Header 1", exact=True).fill("X-Api-Key")
    page.get_by_label("Header 1 value", exact=True).fill(HEADER_SECRET)
    page.get_by_role("button", name="Add server").click()
    expect(page.get_by_role("alert").first).to_contain_text("Nothing was saved")
    expect(page.get_by_role("textbox", name="Name", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("textbox", name="Name", exact=True)).to_have_value("has-hyphen")
    expect(page.get_by_label("Header 1", exact=True)).to_have_value("X-Api-Key")
    expect(page.get_by_label("Header 1 value", exact=True)).to_have_value("")  # secrets are never sent back
    assert HEADER_SECRET not in page.content()
    assert clients(ui_gateway) == []


def test_a_stdio_server_with_a_secret_environment(admin_page: Page, ui_gateway: RunningGateway) -> None:
    page = admin_page
    page.goto(ui_gateway.url + "/mcp-servers/new")
    page.get_by_role("textbox", name="Name", exact=True).fill("local")
    page.get_by_label("Connection", exact=True).select_option("stdio")
    expect(page.get_by_label("Server URL")).to_be_hidden()
    page.get_by_label("Command", exact=True).fill(sys.executable)
    page.get_by_label("Arguments").fill(str(STDIO_SERVER))
    page.get_by_label("Variable 1", exact=True).fill("NOTES_TOKEN")
    page.get_by_label("Variable 1 value", exact=True).fill(ENV_SECRET)
    page.get_by_role("button", name="Add server").click()

    expect(page.locator(".mcp-state")).to_contain_text("Connected", timeout=20_000)
    page.reload()
    for tool in ("add", "echo", "env", "pid"):
        expect(page.get_by_role("cell", name=tool, exact=True)).to_be_visible()
    expect(page.get_by_text("NOTES_TOKEN")).to_be_visible()
    assert ENV_SECRET not in page.content()
    config = only_client(ui_gateway)["config"]
    assert config["connection_type"] == "stdio" and config["auth_type"] == "none"
    assert config["stdio_config"]["envs"] == {"NOTES_TOKEN": "<redacted>"}


# --- OAuth sign-ins in a popup -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "state"), [("OAuth per user", "Ready · per-user sign-in"), ("OAuth, one shared sign-in", "Connected")]
)
def test_oauth_sign_in_in_a_popup_completes_the_setup(
    admin_page: Page, ui_gateway: RunningGateway, oauth_upstream: OAuthMCPUpstream, auth: str, state: str
) -> None:
    page = admin_page
    page.goto(ui_gateway.url + "/mcp-servers/new")
    fill_basics(page, "notes", oauth_upstream.mcp_url, auth)
    page.get_by_role("button", name="Add server").click()
    expect(page).to_have_url(re.compile(r"/mcp-servers/pending/[\w-]+$"))
    expect(page.get_by_role("heading", name="Sign in to notes", exact=True)).to_be_visible()
    expect(page.get_by_role("status").last).to_have_text("Not signed in yet.")
    assert clients(ui_gateway) == []  # nothing is saved before the sign-in
    screenshot(page, "mcp-servers-sign-in")

    sign_in_in_popup(page, "notes")

    expect(page).to_have_url(re.compile(r"/mcp-servers/mcp-\w+$"))
    expect(page.locator(".mcp-state")).to_contain_text(state)
    for tool in NOTES_TOOLS:
        expect(page.get_by_role("cell", name=tool, exact=True)).to_be_visible()
    client = only_client(ui_gateway)
    assert client["config"]["auth_type"] == ("per_user_oauth" if auth == "OAuth per user" else "oauth")
    assert set(NOTES_TOOLS) <= {tool["name"] for tool in client["tools"]}
    if client["config"]["auth_type"] == "per_user_oauth":
        link = page.get_by_role("link", name="See who connected notes")
        expect(link).to_have_attribute("href", f"/connected-services?service={client['config']['client_id']}")
        screenshot(page, "mcp-server")


def test_a_denied_sign_in_can_be_tried_again(
    admin_page: Page, ui_gateway: RunningGateway, oauth_upstream: OAuthMCPUpstream
) -> None:
    page = admin_page
    page.goto(ui_gateway.url + "/mcp-servers/new")
    fill_basics(page, "notes", oauth_upstream.mcp_url, "OAuth per user")
    page.get_by_role("button", name="Add server").click()

    sign_in_in_popup(page, "notes", user="deny")
    expect(page.get_by_role("alert")).to_contain_text("was denied")
    expect(page.get_by_role("link", name="Try again")).to_be_visible()
    screenshot(page, "mcp-servers-sign-in-failed")
    assert clients(ui_gateway) == []

    sign_in_in_popup(page, "notes", button="Try again")
    expect(page).to_have_url(re.compile(r"/mcp-servers/mcp-\w+$"))
    expect(page.get_by_role("cell", name="add_note", exact=True)).to_be_visible()


def test_without_javascript_the_sign_in_opens_a_tab_and_a_button_finishes(
    browser: Browser, ui_gateway: RunningGateway, oauth_upstream: OAuthMCPUpstream
) -> None:
    context = browser.new_context(viewport=DESKTOP, java_script_enabled=False)  # type: ignore[arg-type]
    try:
        page = context.new_page()
        sign_in(page, ui_gateway.url, ui_gateway.admin_token, "/mcp-servers/new")
        fill_basics(page, "notes", oauth_upstream.mcp_url, "OAuth, one shared sign-in")
        page.get_by_role("button", name="Add server").click()
        link = page.get_by_role("link", name="Sign in with notes")
        expect(link).to_have_attribute("target", "_blank")
        expect(link).to_have_attribute("rel", "noopener noreferrer")
        with context.expect_page() as opened:
            link.click()
        tab = opened.value
        tab.get_by_role("button", name=re.compile("alice", re.IGNORECASE)).click()
        expect(tab.get_by_text("You can close this window")).to_be_visible()
        tab.close()
        page.get_by_role("button", name="I’ve signed in — finish setup").click()
        expect(page).to_have_url(re.compile(r"/mcp-servers/mcp-\w+$"))
        expect(page.get_by_text("MCP client connected successfully with OAuth")).to_be_visible()
        expect(page.get_by_role("cell", name="list_notes", exact=True)).to_be_visible()
    finally:
        context.close()


def test_a_shared_server_whose_sign_in_stopped_working_signs_in_again(
    admin_page: Page, ui_gateway: RunningGateway, oauth_upstream: OAuthMCPUpstream
) -> None:
    page = admin_page
    page.goto(ui_gateway.url + "/mcp-servers/new")
    fill_basics(page, "notes", oauth_upstream.mcp_url, "OAuth, one shared sign-in")
    page.get_by_role("button", name="Add server").click()
    sign_in_in_popup(page, "notes")
    expect(page).to_have_url(re.compile(r"/mcp-servers/mcp-\w+$"))
    config_id = only_client(ui_gateway)["config"]["oauth_config_id"]
    # While the sign-in works, its link starts no new attempt (that would stop the server using its token).
    page.goto(f"{ui_gateway.url}/mcp-servers/pending/{config_id}/authorize")
    expect(page).to_have_url(re.compile(r"/mcp-servers/mcp-\w+$"))
    with ui_gateway.admin() as api:
        assert api.get(f"/api/oauth/config/{config_id}/status").json()["status"] == "authorized"
    # What a refresh that failed for good leaves behind (heimdall.oauth.upstream.tokens).
    failed = {"status": "needs_reauth", "status_reason": "token refresh failed: invalid_grant"}
    run_sql_at(ui_gateway.app_dir, update(OAuthConfigRow).where(OAuthConfigRow.id == config_id).values(**failed))

    page.reload()
    expect(page.locator(".mcp-state")).to_contain_text("Needs sign-in again")
    expect(page.locator(".mcp-state")).to_contain_text("invalid_grant")
    page.get_by_role("link", name="Sign in again").click()
    expect(page.get_by_role("heading", name="Sign in to notes again")).to_be_visible()
    sign_in_in_popup(page, "notes")

    expect(page).to_have_url(re.compile(r"/mcp-servers/mcp-\w+$"))
    expect(page.get_by_role("status")).to_contain_text("Signed in to notes again")
    expect(page.locator(".mcp-state")).to_contain_text("Connected")
    with ui_gateway.admin() as api:
        assert api.get(f"/api/oauth/config/{config_id}/status").json()["status"] == "authorized"


# --- edit, reconnect, delete -------------------------------------------------------------------


def test_edit_reconnect_and_delete(admin_page: Page, ui_gateway: RunningGateway) -> None:
    with UpstreamServer("http", api_keys={HEADER_SECRET}) as keyed:
        body = {
            "name": "keyed",
            "connection_type": "http",
            "connection_string": keyed.url,
            "auth_type": "headers",
            "headers": {"X-Api-Key": HEADER_SECRET},
        }
        with ui_gateway.admin() as api:
            created = api.post("/api/mcp/client", json=body)
        assert created.status_code == 200, created.text
        client_id = created.json()["mcp_client_id"]
        page = admin_page
        page.goto(f"{ui_gateway.url}/mcp-servers/{client_id}")
        expect(page.locator(".mcp-state")).to_contain_text("Connected")
        expect(page.get_by_text("X-Api-Key")).to_be_visible()
        assert HEADER_SECRET not in page.content()

        page.get_by_role("link", name="Edit keyed").click()
        assert HEADER_SECRET not in page.content()
        page.get_by_role("textbox", name="Name", exact=True).fill("keyed_notes")
        page.get_by_label("Only the ticked tools").check()
        for tool in ("add", "echo"):
            page.get_by_label(f"Allow {tool}", exact=True).check()
        page.get_by_label("Run echo automatically").check()
        screenshot(page, "mcp-server-edit")
        page.get_by_role("button", name="Save changes").click()
        expect(page.get_by_role("status")).to_contain_text("Saved keyed_notes.")
        config = only_client(ui_gateway)["config"]
        assert config["name"] == "keyed_notes"
        assert config["tools_to_execute"] == ["add", "echo"] and config["tools_to_auto_execute"] == ["echo"]
        assert config["headers"] == {"X-Api-Key": "<redacted>"}  # kept: the value box was left empty
        expect(page.get_by_role("row", name=re.compile("^whoami")).get_by_text("Not allowed")).to_be_visible()

        page.get_by_role("button", name="Reconnect keyed_notes").click()
        expect(page.get_by_role("status")).to_contain_text("Reconnected keyed_notes.")
        assert keyed.initializations() >= 2
        screenshot(page, "mcp-server-headers")

        page.get_by_role("link", name="Delete keyed_notes").click()
        expect(page.get_by_role("heading", name="Delete keyed_notes?")).to_be_visible()
        assert len(clients(ui_gateway)) == 1  # the confirmation page changes nothing
        page.get_by_role("button", name="Delete keyed_notes").click()
        expect(page).to_have_url(ui_gateway.url + "/mcp-servers")
        expect(page.get_by_role("status")).to_contain_text("Deleted keyed_notes.")
        assert clients(ui_gateway) == []


# --- the list ----------------------------------------------------------------------------------


def test_the_list_shows_every_state(
    new_page: Callable[..., Page],
    ui_gateway: RunningGateway,
    upstream: UpstreamServer,
    oauth_upstream: OAuthMCPUpstream,
) -> None:
    with ui_gateway.admin() as api:
        for body in (
            {"name": "notes", "connection_type": "http", "connection_string": upstream.url},
            {"name": "search", "connection_type": "sse", "connection_string": DEAD_URL.replace("/mcp", "/sse")},
            {
                "name": "local_files",
                "connection_type": "stdio",
                "stdio_config": {"command": sys.executable, "args": [str(STDIO_SERVER)]},
            },
        ):
            assert api.post("/api/mcp/client", json=body).status_code == 200
        pending = {
            "name": "wiki",
            "connection_type": "http",
            "connection_string": oauth_upstream.mcp_url,
            "auth_type": "oauth",
        }
        assert api.post("/api/mcp/client", json=pending).json()["status"] == "pending_oauth"
    add_per_user_client(ui_gateway, "crm", oauth_upstream)

    page = new_page()
    sign_in(page, ui_gateway.url, ui_gateway.admin_token, "/mcp-servers")

    def row(name: str) -> Locator:
        return page.get_by_role("row", name=re.compile(f"^{name}"))

    expect(row("local_files").get_by_text("Connected")).to_be_visible()
    expect(row("notes").get_by_text("Connected")).to_be_visible()
    expect(row("search").get_by_text(re.compile("Error|Disconnected"))).to_be_visible()
    expect(row("crm").get_by_text("Ready · per-user sign-in")).to_be_visible()
    waiting = page.get_by_role("region", name="Waiting for sign-in")
    expect(waiting.get_by_role("link", name="wiki", exact=True)).to_be_visible()
    expect(waiting.get_by_text("Pending sign-in")).to_be_visible()
    screenshot(page, "mcp-servers")

    phone = new_page(PHONE)
    sign_in(phone, ui_gateway.url, ui_gateway.admin_token, "/mcp-servers")
    expect(phone.get_by_text("local_files")).to_be_visible()
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the MCP servers list scrolls sideways on a phone ({width}px)"
    screenshot(phone, "mcp-servers-phone")

    waiting.get_by_role("button", name="Discard wiki").click()
    expect(page.get_by_role("status")).to_contain_text("Discarded wiki")
    expect(page.get_by_role("region", name="Waiting for sign-in")).to_have_count(0)
