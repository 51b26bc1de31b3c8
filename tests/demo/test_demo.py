"""``heimdall demo``, started as a user would (the real CLI, a subprocess) and walked through as printed.

1. An MCP client (the SDK's own OAuthClientProvider) connects to the printed /mcp URL; consent in
   a headless browser as the self-declared user alice, who connects notes with her notes account;
   she adds a note and lists hers.
2. The printed curl runs as it is: bob's first call is 401 mcp_auth_required; the browser opens the
   authorize_url and signs in to notes as bob; the same curl then answers with bob's notes, never
   alice's. A streamed "remember …" adds a note through the scripted model.
3. The printed grants curl lists both users' grants. Ctrl-C stops everything and removes the app dir.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
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

from heimdall.demo.runner import DEMO_NOTES
from tests.demo.process import HEIMDALL, Demo, run_demo, run_printed
from tests.per_user.conftest import Browser, text_of
from tests.support.oauth_client_storage import MemoryStorage

CONNECT_LINK = re.compile(r'href="([^"]*/oauth/connect/[^"]+)"[^>]*>\s*Connect')


@pytest.fixture
def demo() -> Iterator[Demo]:
    yield from run_demo()


def sign_in_to_notes(browser: Browser, authorize_url: str, user: str) -> httpx.Response:
    """At the notes service, as a person would: its login page offers the demo users; pick ``user``.
    Returns the gateway's callback page."""
    login = browser.http.get(authorize_url)
    assert login.status_code == 302, login.text
    page = browser.http.get(login.headers["location"])
    assert page.status_code == 200 and "Sign in as alice" in page.text and "Sign in as bob" in page.text
    request_id = parse_qs(urlsplit(login.headers["location"]).query)["req"][0]
    notes_url = login.headers["location"].split("/login", 1)[0]
    back = browser.http.post(f"{notes_url}/login", data={"req": request_id, "user": user})
    assert back.status_code == 302, back.text
    return browser.http.get(back.headers["location"])


class AliceInTheBrowser:
    """Consent as the printed step 1 says: type the User ID "alice", Connect notes, sign in as alice, Finish."""

    def __init__(self, gateway_url: str) -> None:
        self.gateway_url = gateway_url
        self.callback_url = ""

    def consent(self, authorize_url: str) -> None:
        base = self.gateway_url
        with Browser() as browser:  # one cookie jar: the consent flow's and the notes connection's
            start = browser.http.get(authorize_url)
            assert start.status_code == 302, start.text
            flow_id = parse_qs(urlsplit(start.headers["location"]).query)["flow_id"][0]
            identity, csrf = browser.open_link(base + start.headers["location"])
            assert "User ID" in identity.text
            form = {"flow_id": flow_id, "user_id": "alice", "csrf_token": csrf}
            chosen = browser.http.post(f"{base}/api/oauth/per-user/consent/user-id", data=form)
            assert chosen.status_code == 302, chosen.text
            services = browser.http.get(base + chosen.headers["location"])
            link = CONNECT_LINK.search(services.text)
            assert link is not None and "notes" in services.text, services.text
            landed = browser.connect(link.group(1).replace("&amp;", "&"), "alice")
            assert landed.status_code == 302 and "/oauth/consent/mcps" in landed.headers["location"], landed.text
            after, csrf = browser.open_link(base + landed.headers["location"])
            assert "Connected" in after.text
            done = browser.http.post(
                f"{base}/api/oauth/per-user/consent/submit", data={"flow_id": flow_id, "csrf_token": csrf}
            )
            assert done.status_code == 302, done.text
            self.callback_url = done.headers["location"]

    async def redirect_handler(self, authorize_url: str) -> None:
        await asyncio.to_thread(self.consent, authorize_url)

    async def callback_handler(self) -> AuthorizationCodeResult:
        params = {k: v[0] for k, v in parse_qs(urlsplit(self.callback_url).query).items()}
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))


async def alice_uses_notes_over_mcp(mcp_url: str, gateway_url: str) -> tuple[str, str]:
    """Step 1 with the SDK's MCP client; returns (whoami, her notes after adding one)."""
    alice = AliceInTheBrowser(gateway_url)
    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="Demo MCP client", redirect_uris=[AnyUrl("http://127.0.0.1:53682/callback")]
        ),
        storage=MemoryStorage(),
        redirect_handler=alice.redirect_handler,
        callback_handler=alice.callback_handler,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=60) as http:
        async with streamable_http_client(mcp_url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = {tool.name for tool in (await session.list_tools()).tools}
                assert {"notes-list_notes", "notes-add_note", "notes-whoami"} <= names
                added = await session.call_tool("notes-add_note", {"text": "Alice's secret plan"})
                assert not added.is_error, text_of(added)
                whoami = await session.call_tool("notes-whoami", {})
                listed = await session.call_tool("notes-list_notes", {})
                assert not listed.is_error
                return text_of(whoami), text_of(listed)


def test_the_printed_walkthrough_works(demo: Demo) -> None:
    gateway_url = demo.value("Gateway")
    assert demo.value("Virtual key").startswith("sk-bf-")
    assert f"--server-url {gateway_url}/mcp" in demo.output
    assert f"claude mcp add --transport http heimdall-demo {gateway_url}/mcp" in demo.output
    assert httpx.get(f"{gateway_url}/health", trust_env=False).status_code == 200

    # 1. The MCP gateway, as alice.
    whoami, alices = asyncio.run(alice_uses_notes_over_mcp(f"{gateway_url}/mcp", gateway_url))
    assert whoami == "alice"
    assert "Alice's secret plan" in alices and DEMO_NOTES["alice"][0] in alices
    assert DEMO_NOTES["bob"][0] not in alices

    # 2. The LLM gateway, as bob: the printed curl, lazy auth, the same curl again.
    chat = demo.command("curl -s " + gateway_url + "/v1/chat/completions")
    assert "X-Bf-User-Id: bob" in chat
    first = run_printed(chat)
    assert first["status_code"] == 401 and first["error"]["type"] == "mcp_auth_required", first
    authorize_url = first["extra_fields"]["mcp_auth_required"]["authorize_url"]
    with Browser() as browser:
        assert sign_in_to_notes(browser, browser.continue_to_upstream(authorize_url), "bob").status_code == 200
    second = run_printed(chat)
    answer = second["choices"][0]["message"]["content"]
    assert all(note in answer for note in DEMO_NOTES["bob"]), second
    assert not any(note in answer for note in [*DEMO_NOTES["alice"], "Alice's secret plan"])
    assert second["usage"]["total_tokens"] > 0

    # "Remember …" adds a note for bob, streamed through the openai SDK.
    with openai.OpenAI(
        base_url=f"{gateway_url}/v1",
        api_key=demo.value("Virtual key"),
        default_headers={"X-Bf-User-Id": "bob"},
        max_retries=0,
    ) as client:
        stream = client.chat.completions.create(
            model="demo-model",
            messages=[{"role": "user", "content": "Remember to water the plants"}],
            stream=True,
        )
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert "added it to your notes" in streamed
        listed = client.chat.completions.create(
            model="demo-model", messages=[{"role": "user", "content": "What are my notes?"}]
        )
    assert "to water the plants" in (listed.choices[0].message.content or "")

    # 3. Both users' grants, with the printed admin curl.
    grants = run_printed(demo.command("curl -s " + gateway_url + "/api/oauth/per-user/grants"))["grants"]
    owners = {(grant["identity_kind"], grant["identity"], grant["mcp_client_name"]) for grant in grants}
    assert owners == {("user", "alice", "notes"), ("user", "bob", "notes")}
    assert all(grant["status"] == "active" for grant in grants)

    # Ctrl-C stops everything and removes the throwaway app dir.
    app_dir = Path(demo.value("App dir"))
    assert (app_dir / "config.json").exists()
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(30) == 0
    assert not app_dir.exists()
    for url in (gateway_url, demo.value("Notes service"), demo.value("Model")):
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, trust_env=False)


def test_a_taken_port_is_reported() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([HEIMDALL, "demo", "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
