"""UpstreamManager against real MCP servers: streamable HTTP and SSE on 127.0.0.1, stdio subprocesses."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import mcp.types as types
import pytest

from heimdall.config.allowlists import AllowList
from heimdall.mcp.config import ToolManagerConfig
from heimdall.mcp.runtime import (
    AuthRequired,
    Caller,
    ClientState,
    CredentialResolver,
    MCPClientSpec,
    StaticCredentials,
    StdioSpec,
    UpstreamUnavailableError,
)
from heimdall.mcp.upstream import UpstreamManager, UpstreamProtocolError, UpstreamTimings
from tests.support.mcp_servers import UpstreamServer, paged_app
from tests.support.servers import ServerThread, free_port

STDIO_SERVER = Path(__file__).resolve().parents[1] / "support" / "stdio_mcp_server.py"
FAST = UpstreamTimings(
    connect_timeout=5,
    request_timeout=5,
    ping_interval=0.1,
    ping_timeout=1,
    backoff_initial=0.05,
    backoff_max=0.2,
    backoff_jitter=0.1,
    session_idle_timeout=5,
    close_timeout=2,
)


def make_spec(
    client_id: str,
    connection_type: str = "http",
    url: str | None = None,
    *,
    name: str | None = None,
    stdio: StdioSpec | None = None,
    auth_type: str = "none",
    headers: dict[str, str] | None = None,
    allowed_extra_headers: tuple[str, ...] = (),
    tool_sync_interval: float = 60,
    status: str = "active",
    discovered: dict[str, Any] | None = None,
) -> MCPClientSpec:
    return MCPClientSpec(
        id=client_id,
        name=name or client_id,
        connection_type=connection_type,
        url=url,
        stdio=stdio,
        auth_type=auth_type,
        headers=headers or {},
        allowed_extra_headers=AllowList(allowed_extra_headers),
        tools_to_execute=AllowList(["*"]),
        tools_to_auto_execute=AllowList([]),
        is_ping_available=True,
        tool_sync_interval=tool_sync_interval,
        allow_on_all_virtual_keys=False,
        status=status,
        discovered=discovered,
    )


def stdio_spec(client_id: str, **env: str) -> MCPClientSpec:
    return make_spec(client_id, "stdio", stdio=StdioSpec(sys.executable, (str(STDIO_SERVER),), env))


class TokenResolver:
    """Test double of the injected ``CredentialResolver``: one bearer token per user id ("shared" for no caller)."""

    def __init__(self, tokens: dict[str, str], refreshed: dict[str, str] | None = None) -> None:
        self.tokens = tokens
        self.refreshed = refreshed or {}
        self.unauthorized_calls: list[tuple[str, str | None]] = []

    @staticmethod
    def key(caller: Caller | None) -> str:
        return caller.user_id if caller is not None and caller.user_id else "shared"

    async def headers_for(self, spec: MCPClientSpec, caller: Caller | None) -> dict[str, str]:
        token = self.tokens.get(self.key(caller))
        if token is None:
            raise AuthRequired(
                mcp_client_id=spec.id,
                mcp_client_name=spec.name,
                authorize_url="http://127.0.0.1:9/connect",
                session_id="s-1",
                message=f"Authentication required for {spec.name}",
            )
        return {"Authorization": f"Bearer {token}"}

    async def unauthorized(self, spec: MCPClientSpec, caller: Caller | None, www_authenticate: str | None) -> bool:
        key = self.key(caller)
        self.unauthorized_calls.append((key, www_authenticate))
        if key in self.refreshed:
            self.tokens[key] = self.refreshed.pop(key)
            return True
        self.tokens.pop(key, None)
        return False


class Changes(list[str]):
    """What on_catalog_change was called with."""

    def __call__(self, client_id: str) -> None:
        self.append(client_id)


async def eventually(predicate: Callable[[], bool], what: str, within: float = 5.0) -> float:
    """Poll until ``predicate()``; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def state_of(manager: UpstreamManager, client_id: str) -> Callable[[], bool]:
    return lambda: manager.status(client_id).state == ClientState.CONNECTED


def text(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


ManagerFactory = Callable[..., tuple[UpstreamManager, Changes]]


@pytest.fixture
async def managers() -> AsyncIterator[ManagerFactory]:
    made: list[UpstreamManager] = []

    def make(
        credentials: CredentialResolver | None = None, timings: UpstreamTimings = FAST
    ) -> tuple[UpstreamManager, Changes]:
        changes = Changes()
        manager = UpstreamManager(credentials or StaticCredentials(), ToolManagerConfig(), changes, timings=timings)
        made.append(manager)
        return manager, changes

    yield make
    for manager in made:
        await manager.close()


@pytest.fixture
def http_server() -> Iterator[UpstreamServer]:
    with UpstreamServer("http") as server:
        yield server


@pytest.fixture
async def manager(managers: ManagerFactory) -> UpstreamManager:
    manager, _ = managers()
    await manager.start()
    return manager


# -- transports --------------------------------------------------------------------------------------------------


async def test_http_lists_and_calls_tools_prompts_resources(
    http_server: UpstreamServer, manager: UpstreamManager
) -> None:
    spec = make_spec("notes", url=http_server.url)
    await manager.sync([spec])
    await eventually(state_of(manager, "notes"), "connected")

    status = manager.status("notes")
    assert {"add", "echo", "fail", "slow", "grow"} <= {t.name for t in status.tools}
    assert [p.name for p in status.prompts] == ["greet"]
    assert [str(r.uri) for r in status.resources] == ["notes://readme"]
    assert status.reason is None and status.last_sync is not None
    assert status.server_info is not None and status.server_info.name == "notes"
    assert manager.tools("notes") == status.tools

    result = await manager.call_tool(spec, "add", {"a": 2, "b": 3}, None, 5)
    assert text(result) == "5" and result.structured_content == {"result": 5} and not result.is_error

    failed = await manager.call_tool(spec, "fail", {"message": "boom"}, None, 5)
    assert failed.is_error and "boom" in text(failed)

    prompt = await manager.get_prompt(spec, "greet", {"name": "Ada"}, None)
    content = prompt.messages[0].content
    assert isinstance(content, types.TextContent) and content.text == "Say hello to Ada."

    resource = await manager.read_resource(spec, "notes://readme", None)
    first = resource.contents[0]
    assert isinstance(first, types.TextResourceContents) and first.text == "Notes kept by the test upstream."

    with pytest.raises(UpstreamProtocolError) as raised:
        await manager.get_prompt(spec, "no_such_prompt", None, None)
    assert raised.value.message.startswith("notes returned an error:")


async def test_sse_connects_and_calls(manager: UpstreamManager) -> None:
    with UpstreamServer("sse") as server:
        spec = make_spec("sse_notes", "sse", server.url)
        await manager.sync([spec])
        await eventually(state_of(manager, "sse_notes"), "connected over SSE")
        assert "echo" in {t.name for t in manager.status("sse_notes").tools}
        result = await manager.call_tool(spec, "echo", {"text": "over sse"}, None, 5)
        assert text(result) == "over sse"


async def test_stdio_connects_with_merged_environment(manager: UpstreamManager) -> None:
    spec = stdio_spec("local", HEIMDALL_TEST_VALUE="from-spec")
    await manager.sync([spec])
    await eventually(state_of(manager, "local"), "stdio server connected", within=15)
    assert {"add", "env", "pid", "exit_soon"} <= {t.name for t in manager.status("local").tools}
    assert text(await manager.call_tool(spec, "env", {"name": "HEIMDALL_TEST_VALUE"}, None, 5)) == "from-spec"
    # The default environment is still there underneath the spec's variables.
    assert text(await manager.call_tool(spec, "env", {"name": "PATH"}, None, 5)) != ""


async def test_pagination_is_followed(manager: UpstreamManager) -> None:
    with ServerThread(paged_app(page_size=2, count=5), graceful_shutdown_timeout=0.1) as server:
        await manager.sync([make_spec("paged", url=f"{server.url}/mcp")])
        await eventually(state_of(manager, "paged"), "connected")
        assert [t.name for t in manager.status("paged").tools] == ["t0", "t1", "t2", "t3", "t4"]


# -- credentials -------------------------------------------------------------------------------------------------


async def test_static_headers_right_and_wrong(manager: UpstreamManager) -> None:
    with UpstreamServer("http", api_keys={"k1"}) as server:
        good = make_spec("good", url=server.url, auth_type="headers", headers={"X-Api-Key": "k1"})
        bad = make_spec("bad", url=server.url, auth_type="headers", headers={"X-Api-Key": "nope"})
        await manager.sync([good, bad])
        await eventually(state_of(manager, "good"), "the right key connects")
        await eventually(lambda: manager.status("bad").state == ClientState.ERROR, "the wrong key fails")
        assert manager.status("bad").reason == "credentials rejected (HTTP 401)"
        assert manager.tools("bad") == []
        with pytest.raises(UpstreamUnavailableError, match=r"^bad is not connected: credentials rejected"):
            await manager.call_tool(bad, "add", {"a": 1, "b": 1}, None, 1)
        assert text(await manager.call_tool(good, "add", {"a": 1, "b": 1}, None, 5)) == "2"


async def test_allowed_extra_headers_are_forwarded(http_server: UpstreamServer, manager: UpstreamManager) -> None:
    spec = make_spec("fwd", url=http_server.url, allowed_extra_headers=("x-trace",))
    await manager.sync([spec])
    await eventually(state_of(manager, "fwd"), "connected")
    caller = Caller(vk_id="vk1", request_headers={"x-trace": "abc", "x-other": "no"})
    assert text(await manager.call_tool(spec, "header", {"name": "x-trace"}, caller, 5)) == "abc"
    assert text(await manager.call_tool(spec, "header", {"name": "x-other"}, caller, 5)) == ""


async def test_shared_oauth_connection_refreshes_on_401(managers: ManagerFactory) -> None:
    resolver = TokenResolver({"shared": "stale"}, refreshed={"shared": "fresh"})
    manager, _ = managers(resolver)
    await manager.start()
    with UpstreamServer("http", bearer={"fresh": "gateway"}) as server:
        spec = make_spec("svc", url=server.url, auth_type="oauth")
        await manager.sync([spec])
        await eventually(state_of(manager, "svc"), "connected after a refresh")
        assert resolver.unauthorized_calls == [
            ("shared", 'Bearer error="invalid_token", error_description="test upstream"')
        ]
        assert text(await manager.call_tool(spec, "whoami", {}, None, 5)) == "gateway"


# -- per-user clients --------------------------------------------------------------------------------------------


DISCOVERED = {
    "tools": [{"name": "whoami", "inputSchema": {"type": "object"}}, {"name": "broken"}],
    "prompts": [{"name": "greet"}],
    "resources": [{"uri": "notes://readme", "name": "readme"}],
}


async def test_per_user_status_comes_from_discovered(manager: UpstreamManager) -> None:
    verified = make_spec("pu", url="http://127.0.0.1:9/mcp", auth_type="per_user_oauth", discovered=DISCOVERED)
    pending = make_spec("pv", url="http://127.0.0.1:9/mcp", auth_type="per_user_oauth", status="pending_verification")
    await manager.sync([verified, pending])
    status = manager.status("pu")
    assert status.state == ClientState.PER_USER and status.available
    assert [t.name for t in status.tools] == ["whoami"]  # the entry without inputSchema is skipped
    assert [p.name for p in status.prompts] == ["greet"]
    assert [r.name for r in status.resources] == ["readme"]
    assert manager.status("pv").state == ClientState.PENDING_VERIFICATION
    assert manager.tools("pv") == []
    with pytest.raises(UpstreamUnavailableError, match="waiting for an admin"):
        await manager.call_tool(pending, "whoami", {}, Caller(user_id="alice"), 1)


async def test_per_user_calls_use_each_callers_token(managers: ManagerFactory) -> None:
    resolver = TokenResolver({"alice": "tok-alice", "bob": "tok-bob"})
    manager, _ = managers(resolver)
    await manager.start()
    with UpstreamServer("http", bearer={"tok-alice": "alice", "tok-bob": "bob", "tok-alice-2": "alice"}) as server:
        spec = make_spec("pu", url=server.url, auth_type="per_user_oauth", discovered=DISCOVERED)
        await manager.sync([spec])
        alice, bob = Caller(user_id="alice"), Caller(user_id="bob")

        results = await asyncio.gather(
            manager.call_tool(spec, "whoami", {}, alice, 5), manager.call_tool(spec, "whoami", {}, bob, 5)
        )
        assert [text(r) for r in results] == ["alice", "bob"]
        assert text(await manager.call_tool(spec, "whoami", {}, alice, 5)) == "alice"
        assert server.initializations() == 2  # alice's session was reused

        tokens_by_session: dict[str, set[str]] = {}
        for request in server.requests:
            if request.session_id:
                tokens_by_session.setdefault(request.session_id, set()).add(request.headers["authorization"])
        assert len(tokens_by_session) == 2
        assert all(len(tokens) == 1 for tokens in tokens_by_session.values())

        resolver.tokens["alice"] = "tok-alice-2"  # refreshed elsewhere: the old session must not be reused
        assert text(await manager.call_tool(spec, "whoami", {}, alice, 5)) == "alice"
        assert server.initializations() == 3

        with pytest.raises(AuthRequired):
            await manager.call_tool(spec, "whoami", {}, Caller(user_id="carol"), 5)


async def test_per_user_401_refreshes_and_retries(managers: ManagerFactory) -> None:
    resolver = TokenResolver({"alice": "old", "bob": "revoked"}, refreshed={"alice": "new"})
    manager, _ = managers(resolver)
    await manager.start()
    with UpstreamServer("http", bearer={"new": "alice"}) as server:
        spec = make_spec("pu", url=server.url, auth_type="per_user_oauth", discovered=DISCOVERED)
        await manager.sync([spec])
        assert text(await manager.call_tool(spec, "whoami", {}, Caller(user_id="alice"), 5)) == "alice"
        assert [call[0] for call in resolver.unauthorized_calls] == ["alice"]
        assert "invalid_token" in (resolver.unauthorized_calls[0][1] or "")
        # No refresh possible: the resolver's answer (lazy auth) reaches the caller.
        with pytest.raises(AuthRequired):
            await manager.call_tool(spec, "whoami", {}, Caller(user_id="bob"), 5)


async def test_per_user_sessions_close_when_idle(managers: ManagerFactory) -> None:
    manager, _ = managers(TokenResolver({"alice": "t"}), timings=UpstreamTimings(session_idle_timeout=0.2))
    await manager.start()
    with UpstreamServer("http", bearer={"t": "alice"}) as server:
        spec = make_spec("pu", url=server.url, auth_type="per_user_oauth", discovered=DISCOVERED)
        await manager.sync([spec])
        await manager.call_tool(spec, "whoami", {}, Caller(user_id="alice"), 5)
        await eventually(lambda: any(r.method == "DELETE" for r in server.requests), "the idle session to close", 3)
        assert text(await manager.call_tool(spec, "whoami", {}, Caller(user_id="alice"), 5)) == "alice"
        assert server.initializations() == 2


async def test_probe_lists_everything_as_wire_json(manager: UpstreamManager) -> None:
    with UpstreamServer("http", bearer={"admin-tok": "admin"}) as server:
        spec = make_spec("pu", url=server.url, auth_type="per_user_oauth", status="pending_verification")
        found = await manager.probe(spec, {"Authorization": "Bearer admin-tok"})
        tools = {tool["name"]: tool for tool in found["tools"]}
        assert {"add", "whoami"} <= set(tools) and tools["add"]["inputSchema"]["required"] == ["a", "b"]
        assert found["prompts"][0]["name"] == "greet"
        assert found["resources"][0]["uri"] == "notes://readme"
        with pytest.raises(UpstreamUnavailableError, match=r"^pu: credentials rejected \(HTTP 401\)$"):
            await manager.probe(spec, {"Authorization": "Bearer wrong"})


# -- failures and recovery ---------------------------------------------------------------------------------------


async def test_upstream_down_at_start_then_up(manager: UpstreamManager) -> None:
    port = free_port()
    spec = make_spec("late", url=f"http://127.0.0.1:{port}/mcp")
    await manager.sync([spec])
    await eventually(lambda: manager.status("late").retry_count >= 2, "a few failed attempts")
    status = manager.status("late")
    assert status.state == ClientState.DISCONNECTED
    assert status.reason == "connection refused"
    assert status.next_retry is not None
    with pytest.raises(UpstreamUnavailableError, match="^late is not connected: connection refused$"):
        await manager.call_tool(spec, "add", {"a": 1, "b": 2}, None, 1)

    with UpstreamServer("http", port=port):
        await eventually(state_of(manager, "late"), "connected once the upstream is up", within=3)
        assert text(await manager.call_tool(spec, "add", {"a": 1, "b": 2}, None, 5)) == "3"


async def test_http_upstream_killed_and_restarted_on_the_same_port(managers: ManagerFactory) -> None:
    manager, changes = managers()
    await manager.start()
    server = UpstreamServer("http").start()
    try:
        spec = make_spec("flaky", url=server.url)
        await manager.sync([spec])
        await eventually(state_of(manager, "flaky"), "connected")
        assert text(await manager.call_tool(spec, "add", {"a": 1, "b": 1}, None, 5)) == "2"

        await asyncio.to_thread(server.stop)
        await eventually(lambda: manager.status("flaky").state != ClientState.CONNECTED, "the drop to be noticed")
        status = manager.status("flaky")
        assert status.reason is not None and status.state == ClientState.DISCONNECTED
        assert changes.count("flaky") >= 2  # connected, then lost
        assert manager.tools("flaky") == status.tools != []  # still offered: a blip must not make tools vanish
        with pytest.raises(UpstreamUnavailableError, match="^flaky is not connected: "):
            await manager.call_tool(spec, "add", {"a": 1, "b": 1}, None, 1)

        await asyncio.to_thread(server.start)
        await eventually(state_of(manager, "flaky"), "reconnected", within=3)
        assert text(await manager.call_tool(spec, "add", {"a": 2, "b": 2}, None, 5)) == "4"
    finally:
        server.stop()


async def test_stdio_server_exit_restarts_the_process(manager: UpstreamManager) -> None:
    spec = stdio_spec("local")
    await manager.sync([spec])
    await eventually(state_of(manager, "local"), "stdio connected", within=15)
    first_pid = text(await manager.call_tool(spec, "pid", {}, None, 5))

    assert text(await manager.call_tool(spec, "exit_soon", {}, None, 5)) == "bye"
    await eventually(lambda: manager.status("local").state != ClientState.CONNECTED, "the exit to be noticed")
    assert manager.status("local").reason == "connection lost: server process exited"
    await eventually(state_of(manager, "local"), "the process restarted", within=15)
    assert text(await manager.call_tool(spec, "pid", {}, None, 5)) != first_pid


async def test_stdio_command_not_found(manager: UpstreamManager) -> None:
    spec = make_spec("missing", "stdio", stdio=StdioSpec("/nonexistent/heimdall-mcp-server", (), {}))
    await manager.sync([spec])
    await eventually(lambda: manager.status("missing").state == ClientState.ERROR, "the spawn failure")
    assert (manager.status("missing").reason or "").startswith("command not found")


async def test_list_changed_refreshes_the_catalog(http_server: UpstreamServer, managers: ManagerFactory) -> None:
    manager, changes = managers()
    await manager.start()
    spec = make_spec("notes", url=http_server.url, tool_sync_interval=3600)
    await manager.sync([spec])
    await eventually(state_of(manager, "notes"), "connected")
    before = len(changes)

    assert text(await manager.call_tool(spec, "grow", {"name": "sprout"}, None, 5)) == "sprout"
    await eventually(lambda: "sprout" in {t.name for t in manager.tools("notes")}, "the new tool", within=3)
    assert changes[before:] == ["notes"]
    assert text(await manager.call_tool(spec, "sprout", {}, None, 5)) == "sprout ran"


async def test_periodic_tool_sync(http_server: UpstreamServer, managers: ManagerFactory) -> None:
    manager, changes = managers()
    await manager.start()
    spec = make_spec("notes", url=http_server.url, tool_sync_interval=0.1)
    await manager.sync([spec])
    await eventually(state_of(manager, "notes"), "connected")
    first_sync = manager.status("notes").last_sync
    assert http_server.mcp is not None
    http_server.mcp.add_tool(lambda: "shh", name="quiet")  # no notification: only the periodic sync sees it
    await eventually(lambda: "quiet" in {t.name for t in manager.tools("notes")}, "the periodic sync", within=3)
    assert manager.status("notes").last_sync != first_sync
    assert http_server.initializations() == 1 and changes.count("notes") == 2


async def test_sync_adds_updates_and_removes(managers: ManagerFactory) -> None:
    manager, changes = managers()
    await manager.start()
    with UpstreamServer("http") as one, UpstreamServer("http") as two:
        a, b = make_spec("a", url=one.url), make_spec("b", url=two.url)
        await manager.sync([a])
        await eventually(state_of(manager, "a"), "a connected")
        await manager.sync([a, b])
        await eventually(state_of(manager, "b"), "b connected")
        assert one.initializations() == 1

        renamed = make_spec("a", url=one.url, name="alpha", allowed_extra_headers=("x-trace",))
        changes.clear()
        await manager.sync([renamed, b])
        assert changes == ["a"] and manager.status("a").name == "alpha"
        assert manager.status("a").state == ClientState.CONNECTED and one.initializations() == 1

        moved = make_spec("b", url=one.url)
        changes.clear()
        await manager.sync([moved])
        assert set(changes) == {"a", "b"}
        with pytest.raises(KeyError):
            manager.status("a")
        assert manager.tools("a") == []
        await eventually(lambda: one.initializations() == 2 and state_of(manager, "b")(), "b reconnected to one")
        await eventually(lambda: sum(r.method == "DELETE" for r in one.requests) == 1, "a's session closed")


async def test_unreachable_upstream_does_not_delay_others(
    http_server: UpstreamServer, managers: ManagerFactory
) -> None:
    manager, _ = managers(timings=UpstreamTimings(connect_timeout=1, backoff_initial=0.05, close_timeout=1))
    await manager.start()
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        port = silent.getsockname()[1]
        started = time.monotonic()
        await manager.sync(
            [make_spec("hung", url=f"http://127.0.0.1:{port}/mcp"), make_spec("ok", url=http_server.url)]
        )
        assert time.monotonic() - started < 0.1
        await eventually(state_of(manager, "ok"), "the healthy upstream", within=1)
        assert manager.status("hung").state == ClientState.CONNECTING
        await eventually(lambda: manager.status("hung").reason is not None, "the hung one to time out", within=3)
        assert manager.status("hung").reason == "timed out after 1s"
        closing = time.monotonic()
        await manager.close()
        assert time.monotonic() - closing < 1.5


async def test_call_timeout_is_prompt_and_keeps_the_connection(
    http_server: UpstreamServer, manager: UpstreamManager
) -> None:
    spec = make_spec("notes", url=http_server.url)
    await manager.sync([spec])
    await eventually(state_of(manager, "notes"), "connected")
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailableError, match=r"^notes timed out after 0\.3s$"):
        await manager.call_tool(spec, "slow", {"seconds": 5}, None, 0.3)
    assert time.monotonic() - started < 1.0
    assert manager.status("notes").state == ClientState.CONNECTED
    assert text(await manager.call_tool(spec, "add", {"a": 1, "b": 2}, None, 5)) == "3"


async def test_reconnect_opens_a_new_session(http_server: UpstreamServer, manager: UpstreamManager) -> None:
    spec = make_spec("notes", url=http_server.url)
    await manager.sync([spec])
    await eventually(state_of(manager, "notes"), "connected")
    await manager.reconnect("notes")
    await eventually(lambda: http_server.initializations() == 2 and state_of(manager, "notes")(), "reconnected")
    assert text(await manager.call_tool(spec, "add", {"a": 1, "b": 2}, None, 5)) == "3"


async def test_call_waits_for_the_first_connection(http_server: UpstreamServer, managers: ManagerFactory) -> None:
    manager, _ = managers()
    spec = make_spec("notes", url=http_server.url)
    await manager.sync([spec])
    await manager.start()
    assert text(await manager.call_tool(spec, "add", {"a": 1, "b": 2}, None, 5)) == "3"


async def test_restart_between_pings_is_invisible_to_callers(managers: ManagerFactory) -> None:
    resolver = TokenResolver({"shared": "t", "alice": "t"})
    manager, _ = managers(resolver, timings=UpstreamTimings(ping_interval=3600, backoff_initial=0.05))
    await manager.start()
    with UpstreamServer("http", bearer={"t": "alice"}) as server:
        shared = make_spec("shared", url=server.url, auth_type="oauth")
        per_user = make_spec("pu", url=server.url, auth_type="per_user_oauth", discovered=DISCOVERED)
        await manager.sync([shared, per_user])
        await eventually(state_of(manager, "shared"), "connected")
        alice = Caller(user_id="alice")
        assert text(await manager.call_tool(per_user, "whoami", {}, alice, 5)) == "alice"

        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)  # the upstream forgot every session; no ping has noticed yet
        assert text(await manager.call_tool(shared, "add", {"a": 1, "b": 1}, None, 5)) == "2"
        assert text(await manager.call_tool(per_user, "whoami", {}, alice, 5)) == "alice"
