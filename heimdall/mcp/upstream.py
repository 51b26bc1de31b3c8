"""Heimdall as an MCP client: every configured upstream MCP server, kept connected and callable.

``UpstreamManager`` is the upstream half of the MCP gateway. It keeps one long-lived connection
per shared client (auth types ``none``, ``headers``, ``oauth``; see ``connection.py``), opens
per-identity sessions for ``per_user_oauth`` clients on demand (``per_call.py``), and proxies
``tools/call``, ``prompts/get`` and ``resources/read`` verbatim. Every upstream HTTP request takes
its headers from the injected ``CredentialResolver`` (``transports.py``). Those three requests reach
streamable-HTTP upstreams as plain POSTs into the SDK-opened session over a keep-alive pool
(``direct.py``); SSE and stdio upstreams, and everything else, go through the SDK's ``ClientSession``.

Lifecycle (from the app's lifespan)::

    manager = UpstreamManager(resolver, tool_config, on_catalog_change=notify)
    await manager.start()
    await manager.sync(specs)        # at start and after every change; never waits for an upstream
    ...
    await manager.close()            # bounded by UpstreamTimings.close_timeout

``on_catalog_change(client_id)`` runs whenever what a client offers may have changed: it connected,
disconnected or was removed, a sync found differences, the upstream sent ``list_changed``, or its
spec changed. It may be a plain function or a coroutine function.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import mcp.types as types
from pydantic import BaseModel

from heimdall.mcp.config import ToolManagerConfig
from heimdall.mcp.connection import DiscoveredCatalog, SharedConnection, UpstreamCatalog
from heimdall.mcp.direct import DirectClient, DirectFallback
from heimdall.mcp.per_call import UserSessionPool, probe
from heimdall.mcp.runtime import (
    Caller,
    ClientState,
    CredentialResolver,
    MCPClientSpec,
    UpstreamUnavailableError,
)
from heimdall.mcp.transports import RequestAuth, UpstreamTimings, send_request
from heimdall.mcp.upstream_errors import SessionExpiredError, UpstreamProtocolError

__all__ = ["ClientStatus", "DiscoveredCatalog", "UpstreamManager", "UpstreamProtocolError", "UpstreamTimings"]

log = logging.getLogger(__name__)
ResultT = TypeVar("ResultT", bound=BaseModel)
CatalogListener = Callable[[str], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class ClientStatus:
    """One client as the upstream side sees it. Lists are the last known ones, kept while disconnected."""

    client_id: str
    name: str
    state: ClientState
    #: Why it is not connected, for people ("connection refused", "credentials rejected (HTTP 401)").
    reason: str | None
    tools: list[types.Tool]
    prompts: list[types.Prompt]
    resources: list[types.Resource]
    resource_templates: list[types.ResourceTemplate]
    last_sync: datetime | None = None
    #: Failed connection attempts since the last success, and when the next one is due.
    retry_count: int = 0
    next_retry: datetime | None = None
    server_info: types.Implementation | None = None

    @property
    def available(self) -> bool:
        """Whether its tools can be offered right now (connected, or per-user and verified)."""
        return self.state in (ClientState.CONNECTED, ClientState.PER_USER)


def _connection_key(spec: MCPClientSpec) -> tuple[object, ...]:
    """The settings a live connection depends on; a change means reconnecting."""
    return (
        spec.connection_type,
        spec.url,
        spec.stdio,
        spec.auth_type,
        tuple(sorted(spec.headers.items())),
        spec.oauth_config_id,
        spec.is_ping_available,
        spec.tool_sync_interval,
    )


def _fingerprint(spec: MCPClientSpec) -> tuple[object, ...]:
    """Everything that shapes what the client offers (``AllowList`` has no value equality of its own)."""
    lists = (spec.allowed_extra_headers, spec.tools_to_execute, spec.tools_to_auto_execute)
    return (
        spec.name,
        _connection_key(spec),
        tuple((allow.all, allow.names) for allow in lists),
        spec.allow_on_all_virtual_keys,
        spec.status,
        spec.discovered,
    )


class UpstreamManager:
    """All upstream MCP clients of one gateway process. Implements the catalog's ``CatalogSource``."""

    def __init__(
        self,
        credentials: CredentialResolver,
        tool_config: ToolManagerConfig,
        on_catalog_change: CatalogListener | None = None,
        *,
        timings: UpstreamTimings | None = None,
    ) -> None:
        self.tool_config = tool_config
        self.timings = timings or UpstreamTimings()
        self._credentials = credentials
        self._listener = on_catalog_change
        self._specs: dict[str, MCPClientSpec] = {}
        self._connections: dict[str, SharedConnection] = {}
        self._discovered: dict[str, UpstreamCatalog] = {}
        self._direct = DirectClient(credentials)
        self._pool = UserSessionPool(credentials, self.timings, self._direct)
        self._stopping: set[asyncio.Task[None]] = set()
        self._running = False

    # -- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting every shared client synced so far (later syncs connect at once)."""
        self._running = True
        for connection in self._connections.values():
            connection.start()

    async def close(self) -> None:
        """Close every connection and per-user session; bounded by ``timings.close_timeout`` (then cancelled)."""
        self._running = False
        connections = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(*(c.stop() for c in connections), self._pool.close(), return_exceptions=True)
        if self._stopping:
            await asyncio.wait(set(self._stopping), timeout=self.timings.close_timeout)
        await self._direct.close()

    async def sync(self, specs: Sequence[MCPClientSpec]) -> None:
        """Make the connections match ``specs``: start new clients, restart changed ones, stop removed ones.

        Returns without waiting for any upstream; connecting and closing happen in background tasks.
        """
        incoming = {spec.id: spec for spec in specs}
        changed: list[str] = []
        for client_id in [cid for cid in self._specs if cid not in incoming]:
            self._drop(client_id)
            del self._specs[client_id]
            changed.append(client_id)
        for spec in incoming.values():
            old = self._specs.get(spec.id)
            self._specs[spec.id] = spec
            if old is not None and _connection_key(old) != _connection_key(spec):
                self._drop(spec.id)
                old = None
                changed.append(spec.id)
            if old is None:
                self._add(spec)
                if not spec.shared_connection:
                    changed.append(spec.id)
            elif _fingerprint(old) != _fingerprint(spec):
                self._update(spec)
                changed.append(spec.id)
        for client_id in dict.fromkeys(changed):
            await self._notify(client_id)

    def _add(self, spec: MCPClientSpec) -> None:
        if not spec.shared_connection:
            self._discovered[spec.id] = UpstreamCatalog.from_wire(spec.discovered)
            return
        interval = (
            spec.tool_sync_interval if spec.tool_sync_interval > 0 else float(self.tool_config.tool_sync_interval)
        )
        connection = SharedConnection(spec, self._credentials, self.timings, interval, lambda: self._notify(spec.id))
        self._connections[spec.id] = connection
        if self._running:
            connection.start()

    def _update(self, spec: MCPClientSpec) -> None:
        if spec.id in self._connections:
            self._connections[spec.id].update_spec(spec)
        else:
            self._discovered[spec.id] = UpstreamCatalog.from_wire(spec.discovered)

    def _drop(self, client_id: str) -> None:
        self._discovered.pop(client_id, None)
        self._pool.drop_client(client_id)
        connection = self._connections.pop(client_id, None)
        if connection is not None:
            task = asyncio.create_task(connection.stop(), name=f"mcp-upstream-stop-{connection.spec.name}")
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def _notify(self, client_id: str) -> None:
        if self._listener is None:
            return
        try:
            outcome = self._listener(client_id)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            log.exception("on_catalog_change(%s) failed", client_id)

    async def reconnect(self, client_id: str) -> None:
        """Reconnect a shared client now (backoff reset); for a per-user client, close its sessions.

        Raises:
            KeyError: unknown client.
        """
        spec = self._specs[client_id]
        if spec.id in self._connections:
            self._connections[spec.id].reconnect()
        else:
            self._pool.drop_client(client_id)

    # -- state ---------------------------------------------------------------------------------------------------

    def status(self, client_id: str) -> ClientStatus:
        """The client's state and last known lists.

        Raises:
            KeyError: no client with this id was synced.
        """
        spec = self._specs[client_id]
        connection = self._connections.get(client_id)
        if connection is None:
            catalog = self._discovered.get(client_id, UpstreamCatalog())
            pending = spec.status == "pending_verification"
            state = ClientState.PENDING_VERIFICATION if pending else ClientState.PER_USER
            return ClientStatus(
                client_id,
                spec.name,
                state,
                None,
                list(catalog.tools),
                list(catalog.prompts),
                list(catalog.resources),
                list(catalog.resource_templates),
            )
        health = connection.health
        catalog = health.catalog
        return ClientStatus(
            client_id,
            spec.name,
            health.state,
            health.reason,
            list(catalog.tools),
            list(catalog.prompts),
            list(catalog.resources),
            list(catalog.resource_templates),
            health.last_sync,
            health.retry_count,
            health.next_retry,
            health.server_info,
        )

    def _offered(self, client_id: str) -> UpstreamCatalog:
        spec = self._specs.get(client_id)
        if spec is None:
            return UpstreamCatalog()
        connection = self._connections.get(client_id)
        if connection is not None:
            return connection.health.catalog
        if spec.status == "pending_verification":
            return UpstreamCatalog()
        return self._discovered.get(client_id, UpstreamCatalog())

    def tools(self, client_id: str) -> list[types.Tool]:
        """The client's tools under the upstream's names (``CatalogSource``); unknown ids have none.

        A shared client keeps its last known lists while the upstream is down, so that a short outage does
        not make tools vanish from every client; calls fail with ``UpstreamUnavailableError`` meanwhile.
        A per-user client waiting for verification offers nothing.
        """
        return list(self._offered(client_id).tools)

    def prompts(self, client_id: str) -> list[types.Prompt]:
        return list(self._offered(client_id).prompts)

    def resources(self, client_id: str) -> list[types.Resource]:
        return list(self._offered(client_id).resources)

    def resource_templates(self, client_id: str) -> list[types.ResourceTemplate]:
        return list(self._offered(client_id).resource_templates)

    # -- operations ----------------------------------------------------------------------------------------------

    async def call_tool(
        self,
        spec: MCPClientSpec,
        tool_name: str,
        arguments: dict[str, Any] | None,
        caller: Caller | None,
        timeout: float | None = None,  # noqa: ASYNC109 - the per-call budget is part of the contract
    ) -> types.CallToolResult:
        """Call ``tool_name`` (the upstream's own name) and return its result verbatim, ``isError`` ones included.

        ``timeout`` defaults to ``tool_config.tool_execution_timeout``.

        Raises:
            AuthRequired, CredentialUnavailable: from the resolver, unchanged.
            UpstreamUnavailableError: not connected, transport failure, timeout, credentials refused.
            UpstreamProtocolError: the upstream answered with a JSON-RPC error (e.g. unknown tool, invalid params);
                ``.error`` is its ``ErrorData``. Both are ``MCPGatewayError``s with a message safe to show.
        """
        params = types.CallToolRequestParams(name=tool_name, arguments=arguments)
        return await self._request(spec, caller, types.CallToolRequest(params=params), types.CallToolResult, timeout)

    async def get_prompt(
        self,
        spec: MCPClientSpec,
        name: str,
        arguments: dict[str, str] | None,
        caller: Caller | None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> types.GetPromptResult:
        """Get a prompt by the upstream's own name; raises as ``call_tool``."""
        params = types.GetPromptRequestParams(name=name, arguments=arguments)
        return await self._request(spec, caller, types.GetPromptRequest(params=params), types.GetPromptResult, timeout)

    async def read_resource(
        self,
        spec: MCPClientSpec,
        uri: str,
        caller: Caller | None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> types.ReadResourceResult:
        """Read a resource; raises as ``call_tool``."""
        params = types.ReadResourceRequestParams(uri=uri)
        request = types.ReadResourceRequest(params=params)
        return await self._request(spec, caller, request, types.ReadResourceResult, timeout)

    async def probe(self, spec: MCPClientSpec, headers: dict[str, str]) -> DiscoveredCatalog:
        """Connect once with exactly ``headers`` (the resolver is not asked) and list everything as wire JSON.

        For the admin's verification login of ``per_user_oauth`` and ``oauth`` clients.

        Raises:
            UpstreamUnavailableError: connecting or listing failed (the message says why).
        """
        return await probe(spec, headers, self._credentials, self.timings)

    async def _request(
        self,
        spec: MCPClientSpec,
        caller: Caller | None,
        request: types.ClientRequest,
        result_type: type[ResultT],
        limit: float | None,
    ) -> ResultT:
        budget = limit if limit is not None else self.tool_config.tool_execution_timeout
        if not spec.shared_connection:
            if spec.status == "pending_verification":
                raise UpstreamUnavailableError(f"{spec.name} is not connected: waiting for an admin to verify it")
            return await self._pool.request(spec, caller, request, result_type, budget)
        connection = self._connections.get(spec.id)
        if connection is None:
            raise UpstreamUnavailableError(f"{spec.name} is not connected: not configured")
        deadline = time.monotonic() + budget
        headers = await self._credentials.headers_for(spec, caller)
        for attempt in range(2):
            session = await connection.session(max(deadline - time.monotonic(), 0))
            auth = RequestAuth(spec, caller, headers=dict(headers))
            try:
                direct = connection.direct
                if direct is not None:
                    try:
                        return await self._direct.request(
                            direct,
                            request,
                            result_type,
                            auth,
                            max(deadline - time.monotonic(), 0.001),
                            budget=budget,
                            unavailable=connection.unavailable_reason,
                            on_list_changed=connection.list_changed,
                            on_broken=connection.transport_failed,
                        )
                    except DirectFallback:
                        auth = RequestAuth(spec, caller, headers=dict(headers))
                return await send_request(
                    session,
                    request,
                    result_type,
                    auth,
                    max(deadline - time.monotonic(), 0.001),
                    budget=budget,
                    unavailable=connection.unavailable_reason,
                )
            except SessionExpiredError:
                if attempt:
                    raise
                connection.reconnect()  # the upstream restarted between two pings
        raise AssertionError("unreachable")
