"""Real upstream MCP servers for tests, built with the MCP SDK and served on 127.0.0.1.

``UpstreamServer`` runs a small "notes" server (``MCPServer``) over streamable HTTP (``/mcp``) or
SSE (``/sse``) under uvicorn in a thread. It can be stopped and started again on the same port
(to test reconnects), can demand a header (``X-Api-Key`` or a bearer token, else 401 with a
``WWW-Authenticate`` challenge), and records the headers of every request it received::

    with UpstreamServer("http", api_keys={"k1"}) as server:
        ... server.url ..., server.stop(), server.start(), server.requests

Tools: ``add``, ``echo``, ``whoami`` (the user of the bearer token), ``header`` (a request header
as received), ``fail`` (an ``isError`` result), ``slow``, and ``grow`` (adds a tool at runtime and
sends ``notifications/tools/list_changed``). Prompt ``greet``; resource ``notes://readme``.

``paged_app`` serves a low-level server that lists its tools over several pages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import mcp.types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.support.servers import ServerThread

__all__ = ["Recorded", "ServerState", "UpstreamServer", "build_notes_server", "paged_app"]

README = "Notes kept by the test upstream."


@dataclass
class Recorded:
    """One HTTP request that reached the server (headers lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]

    @property
    def session_id(self) -> str | None:
        return self.headers.get("mcp-session-id")


@dataclass
class ServerState:
    """What survives a restart: runtime-added tools, accepted credentials, and the request log."""

    api_keys: set[str] | None = None
    #: Bearer token → user name; None accepts requests without a bearer token.
    bearer: dict[str, str] | None = None
    extra_tools: list[str] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)

    def accepts(self, headers: Mapping[str, str]) -> bool:
        if self.api_keys is not None and headers.get("x-api-key") not in self.api_keys:
            return False
        if self.bearer is not None:
            token = headers.get("authorization", "").removeprefix("Bearer ")
            return token in self.bearer
        return True


def build_notes_server(state: ServerState) -> MCPServer:
    server = MCPServer("notes", version="1.0", log_level="WARNING")

    def add_runtime_tool(name: str) -> None:
        def runtime_tool() -> str:
            return f"{name} ran"

        server.add_tool(runtime_tool, name=name, description=f"{name}, added at runtime")

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Echo the text back.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="The user the bearer token belongs to.")
    def whoami(ctx: Context) -> str:
        token = (ctx.headers or {}).get("authorization", "").removeprefix("Bearer ")
        return (state.bearer or {}).get(token, "anonymous")

    @server.tool(description="A request header as the server received it.")
    def header(name: str, ctx: Context) -> str:
        return (ctx.headers or {}).get(name.lower(), "")

    @server.tool(description="Always fails.")
    def fail(message: str) -> str:
        raise ToolError(message)

    @server.tool(description="Sleep, then answer.")
    async def slow(seconds: float) -> str:
        await anyio.sleep(seconds)
        return "done"

    @server.tool(description="Add a tool named `name` and announce it with tools/list_changed.")
    async def grow(name: str, ctx: Context) -> str:
        state.extra_tools.append(name)
        add_runtime_tool(name)
        await ctx.session.send_tool_list_changed()
        return name

    @server.prompt(description="Greet someone.")
    def greet(name: str) -> str:
        return f"Say hello to {name}."

    @server.resource("notes://readme", description="The readme.", mime_type="text/plain")
    def readme() -> str:
        return README

    for name in state.extra_tools:
        add_runtime_tool(name)
    return server


class RecordingGate:
    """ASGI middleware: records each request and answers 401 (RFC 6750 §3) when its credentials are not accepted."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.state.requests.append(Recorded(scope["method"], scope["path"], headers))
        if self.state.accepts(headers):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "invalid_token"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer error="invalid_token", error_description="test upstream"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class UpstreamServer:
    """The notes server on a fixed port across restarts; ``url`` is its MCP endpoint."""

    def __init__(
        self,
        transport: Literal["http", "sse"] = "http",
        *,
        api_keys: set[str] | None = None,
        bearer: dict[str, str] | None = None,
        port: int = 0,
    ) -> None:
        self.transport = transport
        self.state = ServerState(api_keys=api_keys, bearer=bearer)
        self.port = port
        #: The SDK server currently serving (a fresh one per start).
        self.mcp: MCPServer | None = None
        self._thread: ServerThread | None = None

    def app(self) -> Starlette:
        server = self.mcp = build_notes_server(self.state)
        app = server.sse_app() if self.transport == "sse" else server.streamable_http_app()
        app.add_middleware(RecordingGate, state=self.state)
        return app

    def start(self) -> Self:
        thread = ServerThread(self.app(), port=self.port, graceful_shutdown_timeout=0.1)
        thread.start()
        self.port = thread.port
        self._thread = thread
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    @property
    def url(self) -> str:
        path = "/sse" if self.transport == "sse" else "/mcp"
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def requests(self) -> list[Recorded]:
        return self.state.requests

    def initializations(self) -> int:
        """How many MCP sessions clients opened (POSTs without a session id, or SSE streams)."""
        if self.transport == "sse":
            return sum(1 for r in self.requests if r.method == "GET" and r.path == "/sse")
        return sum(1 for r in self.requests if r.method == "POST" and r.session_id is None)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def paged_app(page_size: int = 2, count: int = 5) -> Starlette:
    """A low-level server whose tools/list is paginated (``nextCursor``), ``count`` tools ``t0``…"""
    tools = [types.Tool(name=f"t{i}", input_schema={"type": "object"}) for i in range(count)]

    async def list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> Any:
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + page_size
        return types.ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < count else None)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
        return types.CallToolResult(content=[types.TextContent(type="text", text=params.name)])

    server: Server[Any] = Server("paged", on_list_tools=list_tools, on_call_tool=call_tool)
    return server.streamable_http_app()
