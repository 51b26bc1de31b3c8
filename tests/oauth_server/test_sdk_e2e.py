"""End to end with the MCP SDK's own OAuth client: 401 → discovery → registration → authorize → consent with a
virtual key (headless browser) → token → tools/list on /mcp through the gateway, then reuse and refresh."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from heimdall.mcp.config import MCPClientConfig
from heimdall.store import mcp_repos
from tests.oauth_server.helpers import (
    REDIRECT,
    VK_ADD_ONLY,
    VK_ALL,
    ASClient,
    gateway_config,
    open_store,
    query_of,
    wait_for_notes,
)
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.mcp_servers import UpstreamServer
from tests.support.oauth_client_storage import MemoryStorage

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
WIKI_TOOLS = {"tools": [{"name": "search", "inputSchema": {"type": "object"}}], "prompts": [], "resources": []}


class HeadlessBrowser:
    """The user: opens the authorize URL, picks the virtual key on the consent page, finishes."""

    def __init__(self, base_url: str, vk: str) -> None:
        self.base_url = base_url
        self.vk = vk
        self.callbacks: list[str] = []
        self.pages: list[str] = []

    async def redirect_handler(self, authorize_url: str) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, trust_env=False, timeout=10) as browser:
            start = await browser.get(authorize_url)
            assert start.status_code == 302, start.text
            page = await browser.get(start.headers["location"])
            assert page.status_code == 200, page.text
            self.pages.append(page.text)
            flow_id = query_of(start.headers["location"])["flow_id"]
            csrf = CSRF.search(page.text)
            assert csrf is not None
            chosen = await browser.post(
                "/api/oauth/per-user/consent/vk", data={"flow_id": flow_id, "vk": self.vk, "csrf_token": csrf.group(1)}
            )
            assert chosen.status_code == 302, chosen.text
            done = await browser.post(
                "/api/oauth/per-user/consent/submit", data={"flow_id": flow_id, "csrf_token": csrf.group(1)}
            )
            assert done.status_code == 302, done.text
            self.callbacks.append(done.headers["location"])

    async def callback_handler(self) -> AuthorizationCodeResult:
        params = query_of(self.callbacks[-1])
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))


@pytest.fixture(scope="module")
def sdk_gateway(notes: UpstreamServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path_factory.mktemp("sdk"), config=gateway_config(notes.url))
    try:
        wait_for_notes(running)
        asyncio.run(add_active_per_user_client(running))
        yield running
    finally:
        running.stop()


async def add_active_per_user_client(gateway: RunningGateway) -> None:
    """A verified per-user client with its discovered tools, as the admin's test login leaves it."""
    store = open_store(gateway.app_dir)
    try:
        config = MCPClientConfig(
            name="wiki",
            connection_type="http",
            connection_string="https://wiki.example/mcp",
            auth_type="per_user_oauth",
            oauth_config={"scopes": ["read"]},
            allow_on_all_virtual_keys=True,
        )
        async with store.transaction() as session:
            await mcp_repos.create_client(session, store.box, config, status=mcp_repos.ACTIVE, discovered=WIKI_TOOLS)
    finally:
        await store.engine.dispose()
    deadline = time.monotonic() + 10
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {gateway.admin_token}"}, trust_env=False
    ) as admin:
        # Wait until the MCP service itself has loaded it (the row alone shows up in the list earlier).
        while ("wiki", "per_user") not in {
            (c["config"]["name"], c["state"]) for c in (await admin.get("/api/mcp/clients")).json()["clients"]
        }:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


async def list_tools(gateway: RunningGateway, auth: httpx2.Auth) -> list[str]:
    async with (
        httpx2.AsyncClient(auth=auth, timeout=15) as http,
        streamable_http_client(f"{gateway.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return sorted(tool.name for tool in (await session.list_tools()).tools)


async def test_sdk_oauth_client_end_to_end(sdk_gateway: RunningGateway) -> None:
    browser = HeadlessBrowser(sdk_gateway.url, VK_ALL)
    storage = MemoryStorage()
    metadata = OAuthClientMetadata(
        client_name="SDK end to end", redirect_uris=[AnyUrl(REDIRECT)], token_endpoint_auth_method="none"
    )

    def provider() -> OAuthClientProvider:
        return OAuthClientProvider(
            f"{sdk_gateway.url}/mcp", metadata, storage, browser.redirect_handler, browser.callback_handler
        )

    names = await list_tools(sdk_gateway, provider())
    assert {"notes-add", "notes-echo", "wiki-search"} <= set(names)
    assert len(browser.callbacks) == 1
    assert "SDK end to end wants to connect to Heimdall" in browser.pages[0]
    tokens = storage.tokens
    assert tokens is not None and tokens.refresh_token and tokens.scope == "mcp:read mcp:write"
    assert storage.client_info is not None and storage.client_info.token_endpoint_auth_method == "none"

    # A new connection with the stored token needs no consent.
    assert await list_tools(sdk_gateway, provider()) == names
    assert len(browser.callbacks) == 1

    # The refresh token rotates; the new access token works too.
    async with httpx.AsyncClient(base_url=sdk_gateway.url, trust_env=False) as http:
        refreshed: Any = await http.post(
            "/api/oauth/per-user/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens.refresh_token,
                "client_id": storage.client_info.client_id,
            },
        )
    assert refreshed.status_code == 200, refreshed.text
    storage.tokens = OAuthToken.model_validate(refreshed.json())
    assert await list_tools(sdk_gateway, provider()) == names
    assert len(browser.callbacks) == 1


def test_services_step_offers_connect_links(sdk_gateway: RunningGateway) -> None:
    """With an identity, each per-user service the key may use gets a single-use Connect link (W1)."""
    with ASClient(sdk_gateway.url) as client:
        started = client.start(client.register())
        chosen = client.choose_vk(started.flow_id, VK_ALL)
        page = client.http.get(chosen.headers["location"])
        assert page.status_code == 200
        assert "Connecting as <strong>Virtual Key all</strong>" in page.text
        assert "wiki" in page.text and "notion" not in page.text  # notion still waits for verification
        links = re.findall(r'href="([^"]*/oauth/connect/[^"]+)"', page.text)
        assert len(links) == 1
        assert started.flow_id not in links[0]  # the link carries a handoff id, not the flow or a session
        again = client.http.get(chosen.headers["location"])
        assert re.findall(r'href="([^"]*/oauth/connect/[^"]+)"', again.text) != links  # fresh per view

        limited = client.start(client.register())
        client.choose_vk(limited.flow_id, VK_ADD_ONLY)
        page = client.http.get(f"/oauth/consent/mcps?flow_id={limited.flow_id}")
        # wiki allows every virtual key; the add-only key has no rule against it
        assert "wiki" in page.text


def test_services_step_without_services(gateway: RunningGateway) -> None:
    with ASClient(gateway.url) as client:
        started = client.start(client.register())
        chosen = client.choose_vk(started.flow_id, VK_ALL)
        page = client.http.get(chosen.headers["location"])
        assert "No MCP services require authentication." in page.text
        assert "Finish Setup" in page.text
