"""``/mcp``: the gateway's own streamable-HTTP MCP server (MCP 2025-11-25 transport, via the SDK).

Each request is authenticated by ``MCPEndpoint`` before the SDK sees it; the caller travels to the
handlers in a context variable, so ``tools/list`` and ``tools/call`` answer for exactly that caller.
Upstream failures become ``isError`` tool results (``Tool execution failed: …``), never a broken
session; a per-user upstream the caller has not connected yet becomes lazy auth (reference.md §2.5).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import mcp.types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError

from heimdall.governance.virtual_keys import VirtualKeyRuntime
from heimdall.mcp.call_log import ToolCallEntry
from heimdall.mcp.catalog import Catalog, CatalogTool, Filters
from heimdall.mcp.runtime import AuthRequired, Caller, MCPGatewayError, ToolNotFoundError

log = logging.getLogger(__name__)

INSTRUCTIONS = "Heimdall MCP gateway: tools of several upstream MCP servers, named <server>-<tool>."


@dataclass(frozen=True)
class MCPRequest:
    """The authenticated caller of one /mcp request."""

    vk: VirtualKeyRuntime | None
    caller: Caller
    filters: Filters = field(default_factory=Filters)


CURRENT_REQUEST: ContextVar[MCPRequest] = ContextVar("heimdall_mcp_request")


def error_result(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def auth_required_text(exc: AuthRequired) -> str:
    """The exact tool-result text of reference.md §2.5."""
    name, url = exc.mcp_client_name, exc.authorize_url
    return f"Authentication required for {name}. Open this URL to connect your account: {url}"


def supports_url_elicitation(session: ServerSession) -> bool:
    capabilities = session.client_capabilities
    return bool(capabilities and capabilities.elicitation and capabilities.elicitation.url is not None)


class _GatewayServer(Server[Any]):
    def create_initialization_options(
        self, notification_options: NotificationOptions | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        options = notification_options or NotificationOptions(
            tools_changed=True, prompts_changed=True, resources_changed=True
        )
        return super().create_initialization_options(options, *args, **kwargs)


class GatewayMCPServer:
    """The low-level SDK server plus its session manager, with per-caller handlers."""

    def __init__(self, catalog: Catalog, upstreams: Any, tool_timeout: Callable[[], float], version: str) -> None:
        self.catalog = catalog
        self.upstreams = upstreams
        self.tool_timeout = tool_timeout
        self.sessions: dict[str, ServerSession] = {}
        #: Where finished ``tools/call`` requests go (the gateway's request log), if anywhere.
        self.record_tool_call: Callable[[ToolCallEntry], None] | None = None
        self.server = _GatewayServer(
            "heimdall",
            version=version,
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
            on_list_resources=self._list_resources,
            on_read_resource=self._read_resource,
        )
        self.sessions_manager = StreamableHTTPSessionManager(app=self.server, stateless=False, json_response=False)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.sessions_manager.run():
            yield

    def _remember(self, ctx: ServerRequestContext[Any, Any]) -> None:
        request = ctx.request
        session_id = request.headers.get("mcp-session-id") if request is not None else None
        if session_id and session_id not in self.sessions:
            self.sessions[session_id] = ctx.session

    def forget(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    async def notify_catalog_changed(self) -> None:
        """Tell every connected client that tools, prompts and resources may have changed (best effort)."""
        for session_id, session in list(self.sessions.items()):
            try:
                await session.send_tool_list_changed()
                await session.send_prompt_list_changed()
                await session.send_resource_list_changed()
            except Exception:
                log.debug("dropping MCP session %s after a failed notification", session_id, exc_info=True)
                self.sessions.pop(session_id, None)

    # --- handlers ---------------------------------------------------------------------------

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        self._remember(ctx)
        return self.list_tools_for(CURRENT_REQUEST.get())

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        self._remember(ctx)
        return await self.call_tool(CURRENT_REQUEST.get(), ctx.session, params)

    def list_tools_for(self, request: MCPRequest) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[entry.tool for entry in self.catalog.tools(request.vk, request.filters)])

    async def call_tool(
        self, request: MCPRequest, session: ServerSession, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        """``tools/call`` for one caller; shared by the SDK handler and the fast path (``fast_path.py``)."""
        record = self.record_tool_call
        logged = ToolCallEntry("/mcp", time.perf_counter(), caller=request.caller, tool=params.name)
        try:
            try:
                entry = logged.entry = self.catalog.tool(params.name, request.vk, request.filters)
            except ToolNotFoundError:
                raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}") from None
            result = await self._run_tool(entry, request, session, params)
            if result.is_error:
                logged.error = "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))
            return result
        except Exception as exc:
            logged.error, logged.error_type = str(exc) or type(exc).__name__, type(exc).__name__
            raise
        finally:
            if record is not None:
                logged.finished = time.perf_counter()
                record(logged)

    async def _run_tool(
        self, entry: CatalogTool, request: MCPRequest, session: ServerSession, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            result: types.CallToolResult = await self.upstreams.call_tool(
                entry.spec, entry.upstream_name, dict(params.arguments or {}), request.caller, self.tool_timeout()
            )
            return result
        except AuthRequired as exc:
            if supports_url_elicitation(session):
                raise UrlElicitationRequiredError(
                    [
                        types.ElicitRequestURLParams(
                            message=f"Connect your {exc.mcp_client_name} account to use {params.name}.",
                            url=exc.authorize_url,
                            elicitation_id=exc.session_id or uuid.uuid4().hex,
                        )
                    ]
                ) from None
            return error_result(auth_required_text(exc))
        except MCPGatewayError as exc:
            return error_result(f"Tool execution failed: {exc.message}")
        except Exception as exc:
            log.exception("tool %s failed", params.name)
            return error_result(f"Tool execution failed: {type(exc).__name__}")

    async def _list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        self._remember(ctx)
        request = CURRENT_REQUEST.get()
        return types.ListPromptsResult(prompts=[e.prompt for e in self.catalog.prompts(request.vk, request.filters)])

    async def _get_prompt(
        self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        request = CURRENT_REQUEST.get()
        try:
            entry = self.catalog.prompt(params.name, request.vk, request.filters)
        except ToolNotFoundError:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt: {params.name}") from None
        try:
            result: types.GetPromptResult = await self.upstreams.get_prompt(
                entry.spec, entry.upstream_name, params.arguments, request.caller
            )
            return result
        except AuthRequired as exc:
            raise MCPError(code=types.INVALID_REQUEST, message=auth_required_text(exc)) from None
        except MCPGatewayError as exc:
            raise MCPError(code=types.INTERNAL_ERROR, message=f"Prompt failed: {exc.message}") from None

    async def _list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        self._remember(ctx)
        request = CURRENT_REQUEST.get()
        return types.ListResourcesResult(
            resources=[e.resource for e in self.catalog.resources(request.vk, request.filters)]
        )

    async def _read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        request = CURRENT_REQUEST.get()
        uri = str(params.uri)
        try:
            entry = self.catalog.resource(uri, request.vk, request.filters)
        except ToolNotFoundError:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown resource: {uri}") from None
        try:
            result: types.ReadResourceResult = await self.upstreams.read_resource(entry.spec, uri, request.caller)
            return result
        except AuthRequired as exc:
            raise MCPError(code=types.INVALID_REQUEST, message=auth_required_text(exc)) from None
        except MCPGatewayError as exc:
            raise MCPError(code=types.INTERNAL_ERROR, message=f"Resource read failed: {exc.message}") from None
