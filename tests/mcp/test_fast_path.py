"""The /mcp fast path and the direct upstream path give the SDK's answers, reuse connections, and keep notifications.

Gateway side (``heimdall/mcp/fast_path.py``): the same session is asked the same things with the fast path
switched off (the SDK answers, as SSE) and on (one ``application/json`` body), and the JSON-RPC answers must be
equal. Upstream side (``heimdall/mcp/direct.py``): requests POSTed into an SDK-opened session must get what the
SDK client gets, over pooled connections (counted at the upstream by client port).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp.types import JSONRPCMessage
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from heimdall.app import HotPathRouter, create_app
from heimdall.mcp.direct import DirectClient
from heimdall.mcp.endpoint import MCPEndpoint
from heimdall.mcp.fast_path import BufferedReceive
from heimdall.mcp.runtime import MCPGatewayError, StaticCredentials
from heimdall.mcp.transports import RequestAuth, UpstreamTimings, open_session, send_request
from heimdall.settings import Settings
from tests.mcp.test_upstream import make_spec
from tests.per_user.conftest import add_per_user_client
from tests.support.gateway import ADMIN_TOKEN, RunningGateway
from tests.support.mcp_servers import RecordingGate, UpstreamServer, build_notes_server
from tests.support.oauth_mcp_upstream import OAuthMCPUpstream, start_oauth_mcp_upstream
from tests.support.servers import ServerThread, free_port

VK = "sk-bf-fast-path-000000000000000001"
TIMINGS = UpstreamTimings(connect_timeout=5, request_timeout=5, close_timeout=2)
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


# -- a test upstream that counts TCP connections ---------------------------------------------------------------------


@dataclass
class Hit:
    port: int
    method: str
    headers: dict[str, str]


@dataclass
class ConnectionLog:
    hits: list[Hit] = field(default_factory=list)

    def direct_posts(self, since: int = 0) -> list[Hit]:
        """POSTs sent by the direct pool (httpx2, the SDK client's library, always sends a User-Agent)."""
        return [h for h in self.hits[since:] if h.method == "POST" and "user-agent" not in h.headers]


class CountConnections:
    """ASGI middleware: the client port of every request (one port per TCP connection)."""

    def __init__(self, app: ASGIApp, log: ConnectionLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            self.log.hits.append(Hit(scope["client"][1], scope["method"], headers))
        await self.app(scope, receive, send)


async def chat(ctx: Context) -> str:
    """Talks back on the call's own stream: a list_changed notification, a ping and a form elicitation."""
    session = ctx.request_context.session
    related = ctx.request_context.request_id
    await session.send_notification(types.ToolListChangedNotification(), related_request_id=related)
    await session.send_request(
        types.PingRequest(), types.EmptyResult, metadata=ServerMessageMetadata(related_request_id=related)
    )
    try:
        await session.elicit_form("Your name?", {"type": "object", "properties": {}}, related_request_id=related)
    except MCPError as exc:
        return f"pinged; elicitation refused: {exc.error.code} {exc.error.message}"
    return "elicited"


class CountingUpstream(UpstreamServer):
    """The notes server plus ``chat``, with every request's client port logged."""

    def __init__(self) -> None:
        super().__init__("http")
        self.connections = ConnectionLog()

    def app(self) -> Starlette:
        server = self.mcp = build_notes_server(self.state)
        server.tool(description="Talk back on the call's stream.")(chat)
        app = server.streamable_http_app()
        app.add_middleware(RecordingGate, state=self.state)
        app.add_middleware(CountConnections, log=self.connections)
        return app


def text_of(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


# -- upstream side: DirectClient against the SDK client on the same session ------------------------------------------


@pytest.fixture
def upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server


async def _outcome(call: Any) -> Any:
    try:
        result = await call
    except MCPGatewayError as exc:
        return (type(exc).__name__, exc.message, getattr(getattr(exc, "error", None), "code", None))
    assert isinstance(result, types.CallToolResult)
    return result.model_dump(by_alias=True, exclude_none=True)


async def test_direct_requests_answer_like_the_sdk_client(upstream: CountingUpstream) -> None:
    spec = make_spec("notes", url=upstream.url)
    direct = DirectClient(StaticCredentials())
    changed: list[str] = []
    try:
        async with open_session(spec, StaticCredentials(), TIMINGS) as opened:
            assert opened.direct is not None and opened.direct.session_id
            calls = [
                ("echo", {"text": "hi"}),
                ("add", {"a": 2, "b": 40}),
                ("fail", {"message": "kaput"}),
                ("add", {"a": "not a number", "b": 1}),
                ("no-such-tool", {}),
                ("chat", {}),
            ]
            for name, arguments in calls:
                request = types.CallToolRequest(params=types.CallToolRequestParams(name=name, arguments=arguments))
                sdk = await _outcome(
                    send_request(opened.session, request, types.CallToolResult, RequestAuth(spec, None), 5)
                )
                fast = await _outcome(
                    direct.request(
                        opened.direct,
                        request,
                        types.CallToolResult,
                        RequestAuth(spec, None),
                        5,
                        on_list_changed=lambda: changed.append("tools"),
                    )
                )
                assert fast == sdk, name
            assert sdk["content"][0]["text"] == "pinged; elicitation refused: -32600 Elicitation not supported"
            assert changed == ["tools"]  # the notification on the chat call's own stream
    finally:
        await direct.close()


async def test_direct_requests_reuse_pooled_connections(upstream: CountingUpstream) -> None:
    spec = make_spec("notes", url=upstream.url)
    direct = DirectClient(StaticCredentials())
    try:
        async with open_session(spec, StaticCredentials(), TIMINGS) as opened:
            assert opened.direct is not None
            mark = len(upstream.connections.hits)

            async def echo(text: str) -> str:
                request = types.CallToolRequest(
                    params=types.CallToolRequestParams(name="echo", arguments={"text": text})
                )
                assert opened.direct is not None
                result = await direct.request(opened.direct, request, types.CallToolResult, RequestAuth(spec, None), 5)
                return text_of(result)

            for i in range(30):
                assert await echo(f"seq {i}") == f"seq {i}"
            sequential = upstream.connections.direct_posts(mark)
            assert len(sequential) == 30
            assert len({hit.port for hit in sequential}) <= 2  # one, unless the upstream closed an idle connection

            mark = len(upstream.connections.hits)
            assert await asyncio.gather(*(echo(f"par {i}") for i in range(8))) == [f"par {i}" for i in range(8)]
            parallel = upstream.connections.direct_posts(mark)
            assert len(parallel) == 8 and len({hit.port for hit in parallel}) <= 8
            assert all(hit.headers["mcp-session-id"] == opened.direct.session_id for hit in parallel)
            assert all(hit.headers["mcp-protocol-version"] == opened.direct.protocol_version for hit in parallel)
    finally:
        await direct.close()


async def test_a_timed_out_direct_request_is_cancelled_upstream(upstream: CountingUpstream) -> None:
    spec = make_spec("notes", url=upstream.url)
    direct = DirectClient(StaticCredentials())
    try:
        async with open_session(spec, StaticCredentials(), TIMINGS) as opened:
            assert opened.direct is not None
            mark = len(upstream.connections.hits)
            request = types.CallToolRequest(params=types.CallToolRequestParams(name="slow", arguments={"seconds": 5}))
            started = time.monotonic()
            with pytest.raises(MCPGatewayError, match=r"^notes timed out after 0\.3s$"):
                await direct.request(opened.direct, request, types.CallToolResult, RequestAuth(spec, None), 0.3)
            assert time.monotonic() - started < 1.0
            # The courtesy notifications/cancelled follows, as the SDK client sends it.
            deadline = time.monotonic() + 5
            while len(upstream.connections.direct_posts(mark)) < 2:
                assert time.monotonic() < deadline, "no cancellation reached the upstream"
                await asyncio.sleep(0.01)
    finally:
        await direct.close()


async def test_buffered_receive_replays_a_body_it_read_ahead() -> None:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"a"', "more_body": True},
        {"type": "http.request", "body": b": 1}", "more_body": False},
        {"type": "http.disconnect"},
    ]
    feed = iter(messages)

    async def receive() -> dict[str, Any]:
        return next(feed)

    buffered = BufferedReceive(receive)
    assert await buffered.read_body(1024) == b'{"a": 1}'
    assert [await buffered() for _ in range(3)] == messages
    feed = iter(messages)
    too_long = BufferedReceive(receive)
    assert await too_long.read_body(5) is None  # the SDK then answers 413 from the replayed messages
    assert [await too_long() for _ in range(3)] == messages


class MemoryEventStore(EventStore):
    """The SDK's resumability interface, kept in a list (MCP 2025-11-25 transports §Resumability and Redelivery)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, JSONRPCMessage | None]] = []

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        event_id = str(len(self.events) + 1)
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        index = next((i for i, (event_id, _, _) in enumerate(self.events) if event_id == last_event_id), None)
        if index is None:
            return None
        stream_id = self.events[index][1]
        for event_id, stream, message in self.events[index + 1 :]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


async def pause(ctx: Context) -> str:
    """Closes the call's SSE stream (the server-side polling pattern), then answers on the resumed stream."""
    await ctx.close_sse_stream()
    await anyio.sleep(0.3)
    return "answered after a resume"


class ResumableUpstream(CountingUpstream):
    def app(self) -> Starlette:
        server = self.mcp = build_notes_server(self.state)
        server.tool(description="Close the stream, then answer.")(pause)
        app = server.streamable_http_app(event_store=MemoryEventStore(), retry_interval=50)
        app.add_middleware(CountConnections, log=self.connections)
        return app


async def test_a_broken_off_answer_is_resumed_like_the_sdk_does() -> None:
    with ResumableUpstream() as upstream:
        spec = make_spec("resumable", url=upstream.url)
        direct = DirectClient(StaticCredentials())
        try:
            async with open_session(spec, StaticCredentials(), TIMINGS) as opened:
                assert opened.direct is not None
                request = types.CallToolRequest(params=types.CallToolRequestParams(name="pause", arguments={}))
                sdk = await send_request(opened.session, request, types.CallToolResult, RequestAuth(spec, None), 5)
                mark = len(upstream.connections.hits)
                fast = await direct.request(opened.direct, request, types.CallToolResult, RequestAuth(spec, None), 5)
                assert text_of(fast) == text_of(sdk) == "answered after a resume"
                resumed = [h for h in upstream.connections.direct_posts(mark) if "last-event-id" in h.headers]
                assert resumed == []  # a resume is a GET
                gets = [
                    h for h in upstream.connections.hits[mark:] if h.method == "GET" and "last-event-id" in h.headers
                ]
                assert len(gets) == 1 and "user-agent" not in gets[0].headers
        finally:
            await direct.close()


# -- gateway side: the same session with the fast path off and on ----------------------------------------------------


@dataclass
class Env:
    gateway: RunningGateway
    router: HotPathRouter
    notes: CountingUpstream
    down: UpstreamServer
    oauth: OAuthMCPUpstream

    @contextmanager
    def fast_path(self, enabled: bool) -> Iterator[None]:
        endpoint = self.router.routes["/mcp"]
        assert isinstance(endpoint, MCPEndpoint)
        before = endpoint.fast_path.enabled
        endpoint.fast_path.enabled = enabled
        try:
            yield
        finally:
            endpoint.fast_path.enabled = before


def _client_state(gateway: RunningGateway, name: str) -> str:
    with gateway.admin() as admin:
        clients = admin.get("/api/mcp/clients").json()["clients"]
    return str(next(c["state"] for c in clients if c["config"]["name"] == name))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    notes, down, oauth = CountingUpstream().start(), UpstreamServer("http").start(), start_oauth_mcp_upstream()
    app_dir = tmp_path_factory.mktemp("fast_path")
    config = {
        "per_user_oauth": {"sweep_interval": 86_400},
        "mcp": {
            "client_configs": [
                {"name": name, "connection_type": "http", "connection_string": server.url, "tools_to_execute": ["*"]}
                for name, server in (("notes", notes), ("down", down))
            ],
            "tool_manager_config": {"tool_execution_timeout": 5},
        },
        "governance": {
            "virtual_keys": [
                {
                    "name": "all",
                    "value": VK,
                    "mcp_configs": [
                        {"mcp_client_name": name, "tools_to_execute": ["*"]} for name in ("notes", "down", "lazy")
                    ],
                }
            ]
        },
    }
    (app_dir / "config.json").write_text(json.dumps(config))
    port = free_port()
    settings = Settings(
        app_dir=app_dir, port=port, config=app_dir / "config.json", admin_token=ADMIN_TOKEN, config_poll_seconds=0.2
    )
    router = create_app(settings)
    server = ServerThread(router, port=port, lifespan="on", http="httptools").start(timeout=30)
    gateway = RunningGateway(url=server.url, app_dir=Path(app_dir), server=server)
    try:
        deadline = time.monotonic() + 15
        while not (_client_state(gateway, "notes") == _client_state(gateway, "down") == "connected"):
            assert time.monotonic() < deadline, "the upstreams did not connect"
            time.sleep(0.05)
        add_per_user_client(gateway, "lazy", oauth)
        yield Env(gateway, router, notes, down, oauth)
    finally:
        gateway.stop()
        for upstream in (notes, down, oauth):
            upstream.stop()


class RawSession:
    """A streamable-HTTP session spoken by hand, so that both answer forms (SSE, JSON) can be compared."""

    def __init__(self, gateway: RunningGateway, capabilities: dict[str, Any] | None = None) -> None:
        self.http = httpx.Client(base_url=gateway.url, timeout=30, trust_env=False, headers={"x-bf-vk": VK})
        self.next_id = 1
        opened = self.http.post("/mcp", headers=MCP_HEADERS, json=self._initialize(capabilities or {}))
        assert opened.status_code == 200, opened.text
        self.session_id = opened.headers["mcp-session-id"]
        self.headers = {**MCP_HEADERS, "mcp-session-id": self.session_id, "mcp-protocol-version": "2025-11-25"}
        done = self.http.post(
            "/mcp", headers=self.headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"}
        )
        assert done.status_code == 202, done.text

    def _initialize(self, capabilities: dict[str, Any]) -> dict[str, Any]:
        params = {
            "protocolVersion": "2025-11-25",
            "capabilities": capabilities,
            "clientInfo": {"name": "t", "version": "1"},
        }
        return {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}

    def post(self, body: bytes) -> httpx.Response:
        return self.http.post("/mcp", headers=self.headers, content=body)

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """(content type, the JSON-RPC answer without its id)."""
        request_id = self.next_id
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        response = self.post(json.dumps(message).encode())
        assert response.status_code == 200, response.text
        content_type = response.headers["content-type"].split(";")[0]
        if content_type == "text/event-stream":
            answers = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
            answer = next(a for a in answers if a.get("id") == request_id)
        else:
            answer = response.json()
        assert answer.pop("id") == request_id
        return content_type, answer

    def close(self) -> None:
        self.http.delete("/mcp", headers=self.headers)
        self.http.close()


@contextmanager
def raw_session(gateway: RunningGateway, capabilities: dict[str, Any] | None = None) -> Iterator[RawSession]:
    session = RawSession(gateway, capabilities)
    try:
        yield session
    finally:
        session.close()


def both_ways(env: Env, session: RawSession, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ask through the SDK, then through the fast path; both must give the same answer."""
    with env.fast_path(False):
        sdk_type, sdk = session.rpc(method, params)
    with env.fast_path(True):
        fast_type, fast = session.rpc(method, params)
    assert (sdk_type, fast_type) == ("text/event-stream", "application/json")
    assert fast == sdk
    return fast


def test_fast_path_answers_exactly_like_the_sdk(env: Env) -> None:
    with raw_session(env.gateway) as session:
        listed = both_ways(env, session, "tools/list")
        names = {tool["name"] for tool in listed["result"]["tools"]}
        assert {"notes-add", "notes-echo", "notes-chat", "down-add", "lazy-whoami"} <= names
        added = both_ways(env, session, "tools/call", {"name": "notes-add", "arguments": {"a": 2, "b": 40}})
        assert added["result"]["content"] == [{"type": "text", "text": "42"}] and not added["result"]["isError"]
        failed = both_ways(env, session, "tools/call", {"name": "notes-fail", "arguments": {"message": "kaput"}})
        assert failed["result"]["isError"] and "kaput" in failed["result"]["content"][0]["text"]
        unknown = both_ways(env, session, "tools/call", {"name": "notes-nope", "arguments": {}})
        assert unknown["error"] == {"code": -32602, "message": "Unknown tool: notes-nope"}
        chatted = both_ways(env, session, "tools/call", {"name": "notes-chat"})
        assert (
            chatted["result"]["content"][0]["text"] == "pinged; elicitation refused: -32600 Elicitation not supported"
        )
        assert both_ways(env, session, "ping") == {"jsonrpc": "2.0", "result": {}}
        assert both_ways(env, session, "tools/list", {"cursor": "ignored"}) == listed


def test_what_the_fast_path_does_not_take_reaches_the_sdk(env: Env) -> None:
    with raw_session(env.gateway) as session, env.fast_path(True):
        session.rpc("tools/list")  # the session is now known to the gateway's handlers
        # Invalid params, another method, a batch: the SDK answers (as SSE, or with its own HTTP errors).
        assert session.rpc("tools/call", {"arguments": {}})[0] == "text/event-stream"
        assert session.rpc("prompts/list")[0] == "text/event-stream"
        bad_json = session.post(b"{not json")
        assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == -32700
        batch = session.post(b'[{"jsonrpc": "2.0", "id": 7, "method": "ping"}]')
        assert batch.status_code == 400 and batch.headers["content-type"] == "application/json"
        unknown = session.http.post(
            "/mcp",
            headers={**session.headers, "mcp-session-id": "f" * 32},
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        )
        assert unknown.status_code == 404 and unknown.json()["error"]["message"] == "Session not found"


def test_an_unreachable_upstream_fails_alike_on_both_paths(env: Env) -> None:
    env.down.stop()
    try:
        with raw_session(env.gateway) as session:
            call = {"name": "down-add", "arguments": {"a": 1, "b": 1}}
            session.rpc("tools/call", call)  # notices the upstream is gone
            deadline = time.monotonic() + 15
            while True:
                try:
                    answer = both_ways(env, session, "tools/call", call)
                    with env.fast_path(False):
                        again = session.rpc("tools/call", call)[1]
                    if again == answer:
                        break
                except AssertionError:
                    pass  # the reason changed between the two calls (a reconnect attempt); ask again
                assert time.monotonic() < deadline, "the failure never settled"
                time.sleep(0.2)
            assert answer["result"]["isError"]
            assert answer["result"]["content"][0]["text"].startswith("Tool execution failed: down is not connected")
    finally:
        env.down.start()


def test_a_cancelled_call_is_answered_alike(env: Env) -> None:
    answers = []
    with raw_session(env.gateway) as session:
        session.rpc("tools/list")
        for enabled in (False, True):
            with env.fast_path(enabled), ThreadPoolExecutor(1) as pool:
                request_id = session.next_id
                call = pool.submit(session.rpc, "tools/call", {"name": "notes-slow", "arguments": {"seconds": 10}})
                time.sleep(0.5)
                cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}
                with httpx.Client(base_url=env.gateway.url, headers={"x-bf-vk": VK}, trust_env=False) as other:
                    assert other.post("/mcp", headers=session.headers, json=cancel).status_code == 202
                started = time.monotonic()
                content_type, answer = call.result(timeout=10)
                assert time.monotonic() - started < 3
                assert content_type == ("application/json" if enabled else "text/event-stream")
                answers.append(answer)
    assert answers[0] == answers[1] == {"jsonrpc": "2.0", "error": {"code": -32800, "message": "Request cancelled"}}


_LINK = re.compile(r"/oauth/connect/[^\s\"]+")


def _normalized(answer: dict[str, Any]) -> dict[str, Any]:
    """Each lazy-auth answer carries a fresh connect link and elicitation id."""
    text = _LINK.sub("/oauth/connect/LINK", json.dumps(answer))
    return dict(json.loads(re.sub(r'"elicitationId": "[^"]+"', '"elicitationId": "ID"', text)))


def test_lazy_auth_is_the_same_on_both_paths(env: Env) -> None:
    call = {"name": "lazy-whoami", "arguments": {}}
    with raw_session(env.gateway) as session:
        session.rpc("tools/list")
        with env.fast_path(False):
            sdk_type, sdk = session.rpc("tools/call", call)
        with env.fast_path(True):
            fast_type, fast = session.rpc("tools/call", call)
        assert (sdk_type, fast_type) == ("text/event-stream", "application/json")
        assert _normalized(fast) == _normalized(sdk)
        text = fast["result"]["content"][0]["text"]
        assert fast["result"]["isError"]
        assert text.startswith(
            f"Authentication required for lazy. Open this URL to connect your account: {env.gateway.url}/oauth/connect/"
        )
    with raw_session(env.gateway, {"elicitation": {"url": {}}}) as session:
        session.rpc("tools/list")
        with env.fast_path(False):
            sdk_type, sdk = session.rpc("tools/call", call)
        with env.fast_path(True):
            fast_type, fast = session.rpc("tools/call", call)
        assert (sdk_type, fast_type) == ("text/event-stream", "application/json")
        assert _normalized(fast) == _normalized(sdk)
        assert fast["error"]["code"] == -32042 and fast["error"]["message"] == "URL elicitation required"
        (elicitation,) = fast["error"]["data"]["elicitations"]
        assert (
            elicitation["mode"] == "url" and elicitation["message"] == "Connect your lazy account to use lazy-whoami."
        )
        assert elicitation["url"].startswith(f"{env.gateway.url}/oauth/connect/")


def test_gateway_calls_reuse_upstream_connections(env: Env) -> None:
    with raw_session(env.gateway) as session, env.fast_path(True):
        session.rpc("tools/list")
        mark = len(env.notes.connections.hits)
        for i in range(30):
            content_type, answer = session.rpc("tools/call", {"name": "notes-echo", "arguments": {"text": f"m{i}"}})
            assert content_type == "application/json" and answer["result"]["content"][0]["text"] == f"m{i}"
        calls = env.notes.connections.direct_posts(mark)
        assert len(calls) == 30
        assert len({hit.port for hit in calls}) <= 2


@asynccontextmanager
async def sdk_session(env: Env, answers: list[str], on_message: Any) -> AsyncIterator[ClientSession]:
    async def note_answer(response: httpx2.Response) -> None:
        if response.request.method == "POST":
            answers.append(response.headers.get("content-type", ""))

    async with httpx2.AsyncClient(headers={"x-bf-vk": VK}, timeout=30, event_hooks={"response": [note_answer]}) as http:
        async with streamable_http_client(f"{env.gateway.url}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                await session.initialize()
                yield session


async def test_list_changed_still_reaches_clients(env: Env) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    answers: list[str] = []
    async with sdk_session(env, answers, on_message) as session:
        await session.list_tools()
        answers.clear()
        grown = await session.send_request(
            types.CallToolRequest(
                params=types.CallToolRequestParams(name="notes-grow", arguments={"name": "fast_fresh"})
            ),
            types.CallToolResult,
        )
        assert text_of(grown) == "fast_fresh"
        assert answers == ["application/json"]  # answered by the fast path
        with anyio.fail_after(10):
            await changed.wait()
        assert "notes-fast_fresh" in {tool.name for tool in (await session.list_tools()).tools}
