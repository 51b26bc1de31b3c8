"""The MCP gateway end to end: real upstream MCP servers, Heimdall under uvicorn, the SDK client on /mcp,
and the LLM path (tools offered to a fake provider, tool execution, agent mode)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import httpx2
import mcp.types as types
import openai
import pytest
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client

from tests.support.fake_providers import FakeProvider, create_fake_provider_app, reply, tool_call
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.mcp_servers import UpstreamServer
from tests.support.servers import RunningServer, serve_in_thread

VK_ALL = "sk-bf-mcp-all-0000000000000000001"
VK_NOTES_ADD = "sk-bf-mcp-notes-add-000000000002"
VK_NO_MCP = "sk-bf-mcp-none-00000000000000003"
ALL_PROVIDERS = [{"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"]}]


@pytest.fixture(scope="module")
def notes() -> Iterator[UpstreamServer]:
    with UpstreamServer("http") as server:
        yield server


@pytest.fixture(scope="module")
def tools_sse() -> Iterator[UpstreamServer]:
    with UpstreamServer("sse", api_keys={"secret-key"}) as server:
        yield server


@pytest.fixture(scope="module")
def fake() -> FakeProvider:
    return create_fake_provider_app()


@pytest.fixture(scope="module")
def provider(fake: FakeProvider) -> Iterator[RunningServer]:
    with serve_in_thread(fake.app) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(
    notes: UpstreamServer, tools_sse: UpstreamServer, provider: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    config = {
        "providers": {
            "openai": {"keys": [{"value": "sk-up", "models": ["*"]}], "network_config": {"base_url": provider.url}}
        },
        "mcp": {
            "client_configs": [
                {
                    "name": "notes",
                    "connection_type": "http",
                    "connection_string": notes.url,
                    "tools_to_execute": ["*"],
                    "tools_to_auto_execute": ["add", "echo", "slow"],
                },
            ],
            "mcp_clients": [
                {
                    "name": "secure",
                    "connection_type": "sse",
                    "connection_string": tools_sse.url,
                    "auth_type": "headers",
                    "headers": {"X-Api-Key": "secret-key"},
                    "tools_to_execute": ["echo", "whoami"],
                },
            ],
            "tool_manager_config": {"max_agent_depth": 3, "tool_execution_timeout": 2},
        },
        "governance": {
            "virtual_keys": [
                {
                    "name": "all",
                    "value": VK_ALL,
                    "provider_configs": ALL_PROVIDERS,
                    "mcp_configs": [
                        {"mcp_client_name": "notes", "tools_to_execute": ["*"]},
                        {"mcp_client_name": "secure", "tools_to_execute": ["*"]},
                    ],
                },
                {
                    "name": "notes-add",
                    "value": VK_NOTES_ADD,
                    "provider_configs": ALL_PROVIDERS,
                    "mcp_configs": [{"mcp_client_name": "notes", "tools_to_execute": ["notes-add"]}],
                },
                {"name": "no-mcp", "value": VK_NO_MCP, "provider_configs": ALL_PROVIDERS},
            ]
        },
    }
    running = start_gateway(tmp_path_factory.mktemp("mcpgw"), config=config)
    deadline = time.monotonic() + 15
    with running.admin() as admin:
        while True:
            clients = admin.get("/api/mcp/clients").json()["clients"]
            states = {c["config"]["name"]: c["state"] for c in clients}
            if states == {"notes": "connected", "secure": "connected"}:
                break
            assert time.monotonic() < deadline, f"upstreams did not connect: {clients}"
            time.sleep(0.05)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _reset(fake: FakeProvider) -> None:
    fake.reset()


@asynccontextmanager
async def mcp_session(
    gateway: RunningGateway, message_handler: Any = None, **headers: str
) -> AsyncIterator[ClientSession]:
    async with httpx2.AsyncClient(headers=headers, timeout=10) as http:
        async with streamable_http_client(f"{gateway.url}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write, message_handler=message_handler) as session:
                await session.initialize()
                yield session


def text_of(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def test_tools_prompts_and_resources_through_mcp(gateway: RunningGateway) -> None:
    async with mcp_session(gateway, **{"x-bf-vk": VK_ALL}) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert {"notes-add", "notes-echo", "notes-grow", "secure-echo", "secure-whoami"} <= names
        assert "secure-add" not in names  # tools_to_execute of the client
        added = await session.call_tool("notes-add", {"a": 2, "b": 40})
        assert not added.is_error and text_of(added) == "42"
        echoed = await session.call_tool("secure-echo", {"text": "through sse with a header"})
        assert text_of(echoed) == "through sse with a header"
        prompts = {p.name for p in (await session.list_prompts()).prompts}
        assert "notes-greet" in prompts
        prompt = await session.get_prompt("notes-greet", {"name": "Ada"})
        assert "Ada" in prompt.messages[0].content.text  # type: ignore[union-attr]
        resources = (await session.list_resources()).resources
        assert any(str(r.uri) == "notes://readme" for r in resources)
        read = await session.read_resource("notes://readme")
        assert read.contents[0].text == "Notes kept by the test upstream."  # type: ignore[union-attr]


async def test_virtual_key_limits_tools(gateway: RunningGateway) -> None:
    async with mcp_session(gateway, **{"x-bf-vk": VK_NOTES_ADD}) as session:
        assert [tool.name for tool in (await session.list_tools()).tools] == ["notes-add"]
        with pytest.raises(MCPError, match="Unknown tool: notes-echo"):
            await session.call_tool("notes-echo", {"text": "no"})
    async with mcp_session(gateway, **{"x-bf-vk": VK_NO_MCP}) as session:
        assert (await session.list_tools()).tools == []


async def test_include_headers_narrow_the_list(gateway: RunningGateway) -> None:
    headers = {"x-bf-vk": VK_ALL, "x-bf-mcp-include-clients": "secure", "x-bf-mcp-include-tools": "secure-whoami"}
    async with mcp_session(gateway, **headers) as session:
        assert [tool.name for tool in (await session.list_tools()).tools] == ["secure-whoami"]


async def test_without_a_key_the_global_view_unless_enforced(gateway: RunningGateway) -> None:
    async with mcp_session(gateway) as session:
        assert "secure-echo" in {tool.name for tool in (await session.list_tools()).tools}
    with gateway.admin() as admin:
        admin.put("/api/config", json={"client": {"enforce_auth_on_inference": True}})
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                response = await http.post(
                    f"{gateway.url}/mcp",
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                    headers={"accept": "application/json, text/event-stream"},
                )
            assert response.status_code == 401
            assert response.json()["error"]["message"] == "virtual key header required to access mcp server"
        finally:
            admin.put("/api/config", json={"client": {"enforce_auth_on_inference": False}})


def test_unknown_virtual_key_is_401(gateway: RunningGateway) -> None:
    response = httpx.post(
        f"{gateway.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={"x-bf-vk": "sk-bf-nope"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "virtual key not found"


async def test_upstream_errors_are_tool_results(gateway: RunningGateway) -> None:
    async with mcp_session(gateway, **{"x-bf-vk": VK_ALL}) as session:
        failed = await session.call_tool("notes-fail", {"message": "kaput"})
        assert failed.is_error and "kaput" in text_of(failed)
        slow = await session.call_tool("notes-slow", {"seconds": 5})
        assert slow.is_error and text_of(slow).startswith("Tool execution failed:")
        assert "timed out" in text_of(slow)
        still = await session.call_tool("notes-add", {"a": 1, "b": 1})
        assert text_of(still) == "2"


MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}


def test_a_session_belongs_to_the_key_that_opened_it(gateway: RunningGateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        opened = http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "x-bf-vk": VK_ALL})
        assert opened.status_code == 200
        session_id = opened.headers["mcp-session-id"]
        headers = {**MCP_HEADERS, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}
        request = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        stolen = http.post("/mcp", json=request, headers={**headers, "x-bf-vk": VK_NOTES_ADD})
        assert stolen.status_code == 404
        anonymous = http.post("/mcp", json=request, headers=headers)
        assert anonymous.status_code == 404
        own = http.post("/mcp", json=request, headers={**headers, "x-bf-vk": VK_ALL})
        assert own.status_code == 200 and "notes-add" in own.text


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "add 2 and 3"}], **extra}


def test_mcp_tools_are_offered_to_the_model(gateway: RunningGateway, fake: FakeProvider) -> None:
    with gateway.client(VK_NOTES_ADD) as http:
        assert http.post("/v1/chat/completions", json=chat_body()).status_code == 200
    offered = [tool["function"]["name"] for tool in fake.last("openai.chat").body["tools"]]
    assert offered == ["notes-add"]


def test_callers_own_tools_are_kept(gateway: RunningGateway, fake: FakeProvider) -> None:
    own = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    with gateway.client(VK_NOTES_ADD) as http:
        http.post("/v1/chat/completions", json=chat_body(tools=[own]))
    names = [tool["function"]["name"] for tool in fake.last("openai.chat").body["tools"]]
    assert names == ["lookup", "notes-add"]


@pytest.mark.parametrize("response_format", ["chat", "responses"])
def test_tool_execute_endpoint(gateway: RunningGateway, response_format: str) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "notes-add", "arguments": '{"a": 20, "b": 22}'}}
    if response_format == "responses":
        call = {"type": "function_call", "call_id": "call_1", "name": "notes-add", "arguments": '{"a": 20, "b": 22}'}
    with gateway.client(VK_ALL) as http:
        response = http.post(f"/v1/mcp/tool/execute?format={response_format}", json=call)
    assert response.status_code == 200, response.text
    if response_format == "chat":
        assert response.json() == {"role": "tool", "tool_call_id": "call_1", "content": "42"}
    else:
        assert response.json() == {"type": "function_call_output", "call_id": "call_1", "output": "42"}


@pytest.mark.parametrize(
    ("call", "status", "fragment"),
    [
        ({"id": "1", "type": "function", "function": {"name": "notes-echo", "arguments": "{}"}}, 404, "not available"),
        (
            {"id": "1", "type": "function", "function": {"name": "notes-add", "arguments": "{oops"}},
            400,
            "not valid JSON",
        ),
        ({"id": "1", "type": "function", "function": {"name": "notes-add", "arguments": "[1]"}}, 400, "JSON object"),
        ({"id": "1"}, 400, "a tool call looks like"),
    ],
)
def test_tool_execute_rejects_bad_calls(
    gateway: RunningGateway, call: dict[str, Any], status: int, fragment: str
) -> None:
    with gateway.client(VK_NOTES_ADD) as http:
        response = http.post("/v1/mcp/tool/execute", json=call)
    assert response.status_code == status
    assert fragment in response.json()["error"]["message"]


def test_agent_mode_runs_auto_tools_and_feeds_results_back(gateway: RunningGateway, fake: FakeProvider) -> None:
    fake.script("openai.chat", [tool_call("notes-add", {"a": 2, "b": 3}, id="call_a"), reply("The sum is 5.")])
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=VK_ALL, max_retries=0) as client:
        result = client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "2+3?"}]
        )
    assert result.choices[0].message.content == "The sum is 5."
    assert result.model_extra["extra_fields"]["agent_iterations"] == 2  # type: ignore[index]
    second = fake.find("openai.chat")[-1].body["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "notes-add"
    assert second[-1] == {"role": "tool", "tool_call_id": "call_a", "content": "5"}


def test_agent_mode_streams_the_final_answer(gateway: RunningGateway, fake: FakeProvider) -> None:
    fake.script(
        "openai.chat",
        [tool_call("notes-echo", {"text": "ping"}, id="call_e"), reply("Echo said ping.")],
    )
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=VK_ALL, max_retries=0) as client:
        chunks = list(
            client.chat.completions.create(
                model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "echo"}], stream=True
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo said ping."
    assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    assert fake.find("openai.chat")[-1].body["messages"][-1]["content"] == "ping"


def test_non_auto_tools_go_back_to_the_caller(gateway: RunningGateway, fake: FakeProvider) -> None:
    fake.script("openai.chat", tool_call("secure-whoami", {}, id="call_w"))
    with gateway.client(VK_ALL) as http:
        body = http.post("/v1/chat/completions", json=chat_body()).json()
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "secure-whoami"
    assert fake.count("openai.chat") == 1


def test_agent_depth_is_bounded(gateway: RunningGateway, fake: FakeProvider) -> None:
    fake.always("openai.chat", tool_call("notes-add", {"a": 1, "b": 1}))
    with gateway.client(VK_ALL) as http:
        body = http.post("/v1/chat/completions", json=chat_body()).json()
    assert fake.count("openai.chat") == 3  # max_agent_depth
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert json.loads(body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {"a": 1, "b": 1}


async def test_upstream_list_changed_reaches_gateway_clients(gateway: RunningGateway) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with mcp_session(gateway, on_message, **{"x-bf-vk": VK_ALL}) as session:
        await session.list_tools()
        await session.call_tool("notes-grow", {"name": "fresh_tool"})
        with anyio.fail_after(10):
            await changed.wait()
        assert "notes-fresh_tool" in {tool.name for tool in (await session.list_tools()).tools}


async def test_upstream_killed_and_restarted_mid_session(tmp_path: Any) -> None:
    upstream = UpstreamServer("http").start()
    config = {
        "mcp": {
            "client_configs": [
                {
                    "name": "flaky",
                    "connection_type": "http",
                    "connection_string": upstream.url,
                    "is_ping_available": True,
                }
            ]
        }
    }
    gateway = start_gateway(tmp_path / "app", config=config)
    try:
        async with mcp_session(gateway) as session:
            for _ in range(200):
                if "flaky-add" in {t.name for t in (await session.list_tools()).tools}:
                    break
                await anyio.sleep(0.05)
            assert text_of(await session.call_tool("flaky-add", {"a": 1, "b": 2})) == "3"
            upstream.stop()
            down = await session.call_tool("flaky-add", {"a": 1, "b": 2})
            assert down.is_error and text_of(down).startswith("Tool execution failed:")
            upstream.start()
            with anyio.fail_after(20):
                while True:
                    result = await session.call_tool("flaky-add", {"a": 2, "b": 2})
                    if not result.is_error:
                        break
                    await anyio.sleep(0.2)
            assert text_of(result) == "4"
    finally:
        gateway.stop()
        upstream.stop()
