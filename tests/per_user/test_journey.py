"""The whole per-user story, as a newcomer would live it, on SQLite and PostgreSQL:

An MCP client (the SDK's own OAuthClientProvider, Claude Code's role) connects to /mcp, goes through
consent in a (headless) browser — identity: Alice's virtual key; services: connect notes_a through
Heimdall's handoff page with Alice's upstream account — and then calls notes_a with Alice's token.
notes_b, skipped at consent, turns into lazy auth; after Alice connects it, the same call works.
The grants made under Alice's virtual key are used on the LLM gateway too (agent mode, openai SDK),
and Bob never sees Alice's tokens.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import openai
import pytest
from mcp import ClientSession
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata
from pydantic import AnyUrl

from tests.per_user.conftest import VK_ALICE, VK_BOB, Browser, Env, auth_required, execute, login_upstream, text_of
from tests.support.fake_providers import create_fake_provider_app, reply, tool_call
from tests.support.oauth_client_storage import MemoryStorage
from tests.support.servers import serve_in_thread

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CONNECT_LINK = re.compile(r'href="([^"]*/oauth/connect/[^"]+)"[^>]*>\s*Connect')


class AliceAtConsent:
    """The user in the browser: picks her virtual key, connects notes_a upstream as alice, finishes."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.callback_url = ""
        self.services_pages: list[str] = []

    def consent(self, authorize_url: str) -> None:
        base = self.env.gateway.url
        with httpx.Client(base_url=base, trust_env=False, timeout=30) as browser:
            start = browser.get(authorize_url)
            assert start.status_code == 302, start.text
            flow_id = parse_qs(urlsplit(start.headers["location"]).query)["flow_id"][0]
            identity = browser.get(start.headers["location"])
            assert "wants to connect" in identity.text
            csrf = CSRF.search(identity.text)
            assert csrf is not None
            chosen = browser.post(
                "/api/oauth/per-user/consent/vk", data={"flow_id": flow_id, "vk": VK_ALICE, "csrf_token": csrf.group(1)}
            )
            assert chosen.status_code == 302, chosen.text
            services = browser.get(chosen.headers["location"])
            self.services_pages.append(services.text)
            links = CONNECT_LINK.findall(services.text)
            assert links, services.text
            notes_a_link = next(link for link in links if "notes_a" in services.text)
            # The handoff page (same browser: it carries the per-attempt cookie to the callback).
            page = browser.get(notes_a_link.replace("&amp;", "&"))
            assert page.status_code == 200 and "notes_a" in page.text
            token = CSRF.search(page.text)
            assert token is not None
            go = browser.post(notes_a_link.replace("&amp;", "&"), data={"csrf_token": token.group(1)})
            assert go.status_code == 302, go.text
            back = login_upstream(browser, go.headers["location"], "alice")
            landed = browser.get(back)
            assert landed.status_code == 302 and "/oauth/consent/mcps" in landed.headers["location"], landed.text
            after = browser.get(landed.headers["location"])
            self.services_pages.append(after.text)
            csrf_after = CSRF.search(after.text)
            assert csrf_after is not None
            done = browser.post(
                "/api/oauth/per-user/consent/submit", data={"flow_id": flow_id, "csrf_token": csrf_after.group(1)}
            )
            assert done.status_code == 302, done.text
            self.callback_url = done.headers["location"]

    async def redirect_handler(self, authorize_url: str) -> None:
        await asyncio.to_thread(self.consent, authorize_url)

    async def callback_handler(self) -> AuthorizationCodeResult:
        params = {k: v[0] for k, v in parse_qs(urlsplit(self.callback_url).query).items()}
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))


async def test_consent_connect_use_lazy_auth_and_share_across_gateways(env: Env, browser: Browser) -> None:
    gateway = env.gateway
    user = AliceAtConsent(env)
    provider = OAuthClientProvider(
        server_url=f"{gateway.url}/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="Journey MCP client", redirect_uris=[AnyUrl("http://127.0.0.1:53682/callback")]
        ),
        storage=MemoryStorage(),
        redirect_handler=user.redirect_handler,
        callback_handler=user.callback_handler,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=60) as http:
        async with streamable_http_client(f"{gateway.url}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = {tool.name for tool in (await session.list_tools()).tools}
                assert {"notes_a-whoami", "notes_b-whoami"} <= names
                # Consent showed notes_a to connect, then as connected.
                assert "Connect" in user.services_pages[0]
                assert "Connected" in user.services_pages[1]
                # notes_a: Alice's own upstream token.
                mine = await session.call_tool("notes_a-whoami", {})
                assert not mine.is_error and text_of(mine) == "alice"
                # notes_b was not connected: lazy auth, with a gateway link.
                lazy = await session.call_tool("notes_b-whoami", {})
                assert lazy.is_error
                text = text_of(lazy)
                assert text.startswith("Authentication required for notes_b. Open this URL to connect your account: ")
                link = text.rsplit(" ", 1)[1]
                assert link.startswith(f"{gateway.url}/oauth/connect/")
                assert browser.connect(link, "alice").status_code == 200
                again = await session.call_tool("notes_b-whoami", {})
                assert not again.is_error and text_of(again) == "alice"

    # The same grants on the LLM gateway, under Alice's virtual key: no further login.
    assert execute(gateway, "notes_a-whoami", vk=VK_ALICE).json()["content"] == "alice"
    assert execute(gateway, "notes_b-whoami", vk=VK_ALICE).json()["content"] == "alice"
    # Bob gets his own lazy auth, never Alice's token.
    details: dict[str, Any] = auth_required(execute(gateway, "notes_a-whoami", vk=VK_BOB))
    assert details["mcp_client_name"] == "notes_a"


@pytest.fixture
def openai_client(env: Env) -> Any:
    with openai.OpenAI(base_url=f"{env.gateway.url}/v1", api_key=VK_BOB, max_retries=0) as client:
        yield client


def test_openai_sdk_sees_lazy_auth_as_an_error_with_the_link(env: Env, openai_client: openai.OpenAI) -> None:
    """No provider is configured in this environment: the tool execution endpoint is the LLM-side entry."""
    call = {"id": "c1", "type": "function", "function": {"name": "notes_b-whoami", "arguments": "{}"}}
    with pytest.raises(openai.AuthenticationError) as info:
        openai_client.post("/mcp/tool/execute", body=call, cast_to=object)
    body: Any = info.value.response.json()
    assert body["error"]["type"] == "mcp_auth_required"
    assert body["extra_fields"]["mcp_auth_required"]["authorize_url"] in str(info.value)


def test_agent_mode_turns_into_lazy_auth_then_runs_with_the_users_token(env: Env, browser: Browser) -> None:
    """/v1/chat/completions in agent mode (openai SDK): 401 mcp_auth_required, connect, same request succeeds."""
    fake = create_fake_provider_app()
    notes_b = env.client_ids["notes_b"]
    with serve_in_thread(fake.app) as upstream, env.gateway.admin() as admin:
        provider = {
            "name": "openai",
            "network_config": {"base_url": upstream.url},
            "keys": [{"value": "sk-fake", "models": ["*"]}],
        }
        assert admin.post("/api/providers", json=provider).status_code == 201
        openai_rule = [{"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"]}]
        assert admin.put("/api/governance/virtual-keys/vk-bob", json={"provider_configs": openai_rule}).is_success
        assert admin.put(f"/api/mcp/client/{notes_b}", json={"tools_to_auto_execute": ["whoami"]}).is_success
        try:
            messages: Any = [{"role": "user", "content": "who am I on notes_b?"}]
            with openai.OpenAI(base_url=f"{env.gateway.url}/v1", api_key=VK_BOB, max_retries=0) as client:
                fake.script("openai.chat", tool_call("notes_b-whoami", {}, id="call_w"))
                with pytest.raises(openai.AuthenticationError) as info:
                    client.chat.completions.create(model="openai/gpt-4o-mini", messages=messages)
                body = info.value.response.json()
                link = body["extra_fields"]["mcp_auth_required"]["authorize_url"]
                assert link in body["error"]["message"]
                assert browser.connect(link, "bob").status_code == 200
                fake.script("openai.chat", [tool_call("notes_b-whoami", {}, id="call_w"), reply("You are bob.")])
                answer = client.chat.completions.create(model="openai/gpt-4o-mini", messages=messages)
            assert answer.choices[0].message.content == "You are bob."
            fed_back = fake.find("openai.chat")[-1].body["messages"][-1]
            assert fed_back == {"role": "tool", "tool_call_id": "call_w", "content": "bob"}
        finally:
            admin.put(f"/api/mcp/client/{notes_b}", json={"tools_to_auto_execute": []})
            admin.put("/api/governance/virtual-keys/vk-bob", json={"provider_configs": []})
            admin.delete("/api/providers/openai")
