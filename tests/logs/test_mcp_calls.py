"""MCP tool calls in the request log: ``/v1/mcp/tool/execute``, ``tools/call`` over ``/mcp``, and agent mode."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.logs.conftest import VK_APP, StartGateway, chat, detail_of, gateway_config, post, wait_for_logs
from tests.support.fake_providers import FakeProvider, reply, tool_call
from tests.support.gateway import RunningGateway
from tests.support.mcp_servers import UpstreamServer
from tests.support.servers import RunningServer


@pytest.fixture(scope="module")
def notes() -> Iterator[UpstreamServer]:
    with UpstreamServer("http") as server:
        yield server


@pytest.fixture
def gateway(start_sqlite: StartGateway, upstream: RunningServer, notes: UpstreamServer) -> RunningGateway:
    config: dict[str, Any] = gateway_config(upstream.url)
    config["mcp"] = {
        "client_configs": [
            {
                "name": "notes",
                "connection_type": "http",
                "connection_string": notes.url,
                "tools_to_execute": ["*"],
                "tools_to_auto_execute": ["add"],
            }
        ]
    }
    for vk in config["governance"]["virtual_keys"]:
        vk["mcp_configs"] = [{"mcp_client_name": "notes", "tools_to_execute": ["*"]}]
    running = start_sqlite(config)
    deadline = time.monotonic() + 15
    with running.admin() as admin:
        while admin.get("/api/mcp/clients").json()["clients"][0]["state"] != "connected":
            assert time.monotonic() < deadline, "the MCP upstream did not connect"
            time.sleep(0.05)
    return running


def test_tool_execute(gateway: RunningGateway) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "notes-add", "arguments": '{"a": 2, "b": 3}'}}
    assert post(gateway, "/v1/mcp/tool/execute", call).json()["content"] == "5"
    failing = {"id": "call_2", "type": "function", "function": {"name": "notes-fail", "arguments": '{"message": "no"}'}}
    assert post(gateway, "/v1/mcp/tool/execute", failing).status_code == 200
    missing = {"id": "call_3", "type": "function", "function": {"name": "notes-nothing", "arguments": "{}"}}
    assert post(gateway, "/v1/mcp/tool/execute", missing).status_code == 404

    rows = {row["model_requested"]: row for row in wait_for_logs(gateway, 3, endpoint="/v1/mcp/tool/execute")}
    added = rows["notes-add"]
    assert (added["caller"], added["provider"], added["model_resolved"]) == ("app", "notes", "add")
    assert added["status_code"] == 200 and added["error"] is None and added["latency_ms"] > 0
    assert rows["notes-fail"]["status_code"] == 200 and rows["notes-fail"]["error"]
    assert rows["notes-nothing"]["status_code"] == 404 and rows["notes-nothing"]["provider"] is None


async def test_tools_call_over_mcp(gateway: RunningGateway) -> None:
    async with httpx2.AsyncClient(headers={"x-bf-vk": VK_APP}, timeout=10) as http:
        async with streamable_http_client(f"{gateway.url}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await session.list_tools()
                assert not (await session.call_tool("notes-add", {"a": 1, "b": 1})).is_error
                assert (await session.call_tool("notes-fail", {"message": "boom"})).is_error

    with gateway.admin() as admin:
        rows = admin.get("/api/logs", params={"endpoint": "/mcp"}).json()["logs"]
    by_tool = {row["model_requested"]: row for row in rows}
    assert set(by_tool) == {"notes-add", "notes-fail"}  # tools/list and initialize are not logged
    assert by_tool["notes-add"]["caller"] == "app" and by_tool["notes-add"]["error"] is None
    assert "boom" in by_tool["notes-fail"]["error"]


def test_agent_mode_iterations(gateway: RunningGateway, fake: FakeProvider) -> None:
    fake.script("openai.chat", [tool_call("notes-add", {"a": 20, "b": 22}), reply("it is 42")])
    response = post(gateway, "/v1/chat/completions", chat("my-alias", "add 20 and 22"))
    assert response.status_code == 200, response.text

    [row] = wait_for_logs(gateway, 1, endpoint="/v1/chat/completions")
    detail = detail_of(gateway, row["id"])["detail"]
    assert detail["agent_iterations"] == 2
    assert detail["attempts"] == 2
    assert "notes-add" in detail["tools_offered"]
    assert row["total_tokens"] == response.json()["usage"]["total_tokens"]
