"""The long-lived shared connection to one upstream MCP server (auth types none, headers and oauth).

One asyncio task per client owns the transport and the ``ClientSession`` for their whole life
(anyio cancel scopes must be left by the task that entered them); callers borrow the session.
The task reconnects with exponential backoff whenever connecting fails or the connection drops::

    connecting ──ok──▶ connected ──drop (stream closed, ping failed)──▶ disconnected ─┐
        │                  ▲                                                          │
        └──fail──▶ error / disconnected ──backoff (0.5 s doubling to 30 s)──▶ retry ◀─┘

While connected it refreshes the tool, prompt and resource lists every ``tool_sync_interval``
seconds and whenever the upstream sends a ``notifications/*/list_changed``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, TypeVar

import anyio
import mcp.types as types
from mcp.client.session import ClientSession, IncomingMessage
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError

from heimdall.mcp.runtime import ClientState, CredentialResolver, MCPClientSpec, UpstreamUnavailableError
from heimdall.mcp.transports import REQUEST_AUTH, DirectTarget, RequestAuth, UpstreamTimings, open_session, wire
from heimdall.mcp.upstream_errors import ConnectionLost, describe_error, is_failure, is_transient, report_crash

__all__ = ["DiscoveredCatalog", "SharedConnection", "UpstreamCatalog", "fetch_catalog"]

log = logging.getLogger(__name__)

#: A misbehaving upstream that never stops paginating is cut off here.
MAX_PAGES = 100
_LIST_CHANGED = (
    types.ToolListChangedNotification,
    types.PromptListChangedNotification,
    types.ResourceListChangedNotification,
)
ItemT = TypeVar("ItemT", bound=BaseModel)


class DiscoveredCatalog(TypedDict):
    """An upstream's lists as MCP wire JSON, as persisted in ``MCPClientSpec.discovered``."""

    tools: list[dict[str, Any]]
    prompts: list[dict[str, Any]]
    resources: list[dict[str, Any]]
    resource_templates: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class UpstreamCatalog:
    """What one upstream offers, under its own names."""

    tools: tuple[types.Tool, ...] = ()
    prompts: tuple[types.Prompt, ...] = ()
    resources: tuple[types.Resource, ...] = ()
    resource_templates: tuple[types.ResourceTemplate, ...] = ()

    def to_wire(self) -> DiscoveredCatalog:
        return DiscoveredCatalog(
            tools=[wire(t) for t in self.tools],
            prompts=[wire(p) for p in self.prompts],
            resources=[wire(r) for r in self.resources],
            resource_templates=[wire(t) for t in self.resource_templates],
        )

    @classmethod
    def from_wire(cls, data: Mapping[str, Any] | None) -> UpstreamCatalog:
        """Parse persisted wire JSON; entries that do not validate are skipped (and logged)."""
        data = data or {}
        return cls(
            tools=_parse(data, "tools", types.Tool),
            prompts=_parse(data, "prompts", types.Prompt),
            resources=_parse(data, "resources", types.Resource),
            resource_templates=_parse(data, "resource_templates", types.ResourceTemplate),
        )


def _parse(data: Mapping[str, Any], key: str, model: type[ItemT]) -> tuple[ItemT, ...]:
    items: list[ItemT] = []
    raw = data.get(key)
    for entry in raw if isinstance(raw, list) else []:
        try:
            items.append(model.model_validate(entry))
        except ValidationError as exc:
            log.warning(
                "ignoring an invalid discovered %s entry: %s", key, exc.errors()[0]["msg"] if exc.errors() else exc
            )
    return tuple(items)


async def _all_pages(
    fetch: Callable[[types.PaginatedRequestParams | None], Awaitable[Any]], attribute: str
) -> tuple[Any, ...]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await fetch(types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        items.extend(getattr(page, attribute))
        cursor = page.next_cursor
        if not cursor:
            break
    return tuple(items)


async def fetch_catalog(session: ClientSession) -> UpstreamCatalog:
    """List tools, prompts, resources and resource templates, following ``nextCursor`` (MCP 2025-11-25 pagination).

    Only what the server declared in its capabilities is asked for.
    """
    capabilities = session.server_capabilities or types.ServerCapabilities()
    tools: tuple[types.Tool, ...] = ()
    prompts: tuple[types.Prompt, ...] = ()
    resources: tuple[types.Resource, ...] = ()
    templates: tuple[types.ResourceTemplate, ...] = ()
    if capabilities.tools is not None:
        tools = await _all_pages(lambda p: session.list_tools(params=p), "tools")
    if capabilities.prompts is not None:
        prompts = await _all_pages(lambda p: session.list_prompts(params=p), "prompts")
    if capabilities.resources is not None:
        resources = await _all_pages(lambda p: session.list_resources(params=p), "resources")
        templates = await _all_pages(lambda p: session.list_resource_templates(params=p), "resource_templates")
    return UpstreamCatalog(tools, prompts, resources, templates)


@dataclass(slots=True)
class _Health:
    state: ClientState = ClientState.CONNECTING
    reason: str | None = None
    last_sync: datetime | None = None
    retry_count: int = 0
    next_retry: datetime | None = None
    server_info: types.Implementation | None = None
    catalog: UpstreamCatalog = field(default_factory=UpstreamCatalog)


class SharedConnection:
    """One upstream, connected in a background task; ``on_change`` runs when its catalog or availability changes."""

    def __init__(
        self,
        spec: MCPClientSpec,
        credentials: CredentialResolver,
        timings: UpstreamTimings,
        sync_interval: float,
        on_change: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        self.spec = spec
        self.health = _Health()
        self._credentials = credentials
        self._timings = timings
        self._sync_interval = sync_interval
        self._on_change = on_change
        self._own = RequestAuth(spec, None)
        self._session: ClientSession | None = None
        self._direct: DirectTarget | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        self._list_changed = asyncio.Event()
        self._stopping = False
        self._reconnect = False
        self._closed_by_upstream = False

    # -- control -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mcp-upstream-{self.spec.name}")
            self._task.add_done_callback(report_crash)

    def update_spec(self, spec: MCPClientSpec) -> None:
        """Adopt a spec whose connection settings are unchanged (names, allow-lists)."""
        self.spec = spec
        self._own.spec = spec

    def reconnect(self) -> None:
        """Drop the current connection (or skip the backoff wait) and connect again now."""
        self._reconnect = True
        self._settled.clear()
        self.health.state = ClientState.CONNECTING
        self.health.next_retry = None
        self._wake.set()

    async def stop(self) -> None:
        """Close the connection; bounded by ``close_timeout``, after which the task is cancelled."""
        self._stopping = True
        self._wake.set()
        task = self._task
        if task is None or task.done():
            return
        if not self.available:
            task.cancel()  # a connection attempt may hang until connect_timeout; nothing to close gracefully
        _done, pending = await asyncio.wait({task}, timeout=self._timings.close_timeout)
        if pending:
            log.warning(
                "MCP client %s did not close within %ss; cancelling", self.spec.name, self._timings.close_timeout
            )
            task.cancel()
            await asyncio.wait({task}, timeout=self._timings.close_timeout)

    @property
    def available(self) -> bool:
        return self._session is not None and self.health.state == ClientState.CONNECTED

    async def session(self, wait: float) -> ClientSession:
        """The live session; waits up to ``wait`` seconds while a connection attempt is under way.

        Raises:
            UpstreamUnavailableError: not connected (the message carries the reason).
        """
        if not self._settled.is_set() and not self._stopping:
            with anyio.move_on_after(wait):
                await self._settled.wait()
        if self._session is None or self.health.state != ClientState.CONNECTED:
            raise UpstreamUnavailableError(f"{self.spec.name} is not connected: {self.unavailable_reason()}")
        return self._session

    @property
    def direct(self) -> DirectTarget | None:
        """Where requests can be POSTed into the live session directly (streamable HTTP only; see ``direct.py``)."""
        return self._direct if self.available else None

    def list_changed(self) -> None:
        """The upstream announced a list change outside the SDK session (on a direct request's stream)."""
        self._list_changed.set()

    def transport_failed(self) -> None:
        """A direct request could not reach the upstream: treat it as the SDK transport's failure would be."""
        if self.available:
            self._upstream_closed()

    def unavailable_reason(self) -> str:
        if self.health.reason:
            return self.health.reason
        return "still connecting" if self.health.state == ClientState.CONNECTING else "connection closed"

    # -- the connection task -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        REQUEST_AUTH.set(self._own)  # the task's own context: pings, lists and the event stream use it
        failures = 0
        while not self._stopping:
            self._wake.clear()
            self._reconnect = False
            self._closed_by_upstream = False
            self._own.challenge = self._own.error = None
            self._own.session_gone = False
            was_connected = False
            try:
                was_connected = await self._serve()
            except BaseException as exc:
                if self._stopping and is_failure(exc):
                    break  # failing while being stopped changes nothing
                task = asyncio.current_task()
                if not is_failure(exc) or (task is not None and task.cancelling()):
                    raise
                was_connected = self.health.state == ClientState.CONNECTED
                await self._failed(exc, was_connected)
            finally:
                self._session = None
                self._direct = None
            if self._stopping:
                break
            if was_connected:
                failures = 0
            if self._reconnect:
                failures = 0
                continue
            delay = self._backoff(failures)
            failures += 1
            self.health.retry_count = failures
            self.health.next_retry = datetime.now(UTC) + timedelta(seconds=delay)
            self._settled.set()
            with anyio.move_on_after(delay):
                await self._wake.wait()
        self.health.state = ClientState.DISCONNECTED
        self.health.next_retry = None
        self._settled.set()

    def _backoff(self, failures: int) -> float:
        t = self._timings
        base = min(t.backoff_max, t.backoff_initial * (2.0 ** min(failures, 30)))
        return base * random.uniform(1 - t.backoff_jitter, 1 + t.backoff_jitter)

    async def _failed(self, exc: BaseException, was_connected: bool) -> None:
        reason = describe_error(exc, self._own, self._timings)
        transient = is_transient(exc, self._own)
        if not self._stopping:
            log.info("MCP client %s: %s", self.spec.name, reason)
        self.health.reason = f"connection lost: {reason}" if was_connected else reason
        self.health.state = ClientState.DISCONNECTED if transient else ClientState.ERROR
        if was_connected and not self._stopping:
            await self._on_change()

    async def _serve(self) -> bool:
        """Connect, then keep the connection until asked to stop or reconnect. Returns whether it had connected."""
        if self.health.reason is None:
            self.health.state = ClientState.CONNECTING
        async with open_session(
            self.spec, self._credentials, self._timings, on_message=self._on_message, on_close=self._upstream_closed
        ) as opened:
            session = opened.session
            self._list_changed.clear()
            with anyio.fail_after(self._timings.connect_timeout):
                catalog = await fetch_catalog(session)
            health = self.health
            health.state, health.reason, health.retry_count, health.next_retry = ClientState.CONNECTED, None, 0, None
            health.server_info = opened.initialize.server_info
            self._session = session
            self._direct = opened.direct
            self._settled.set()
            log.info("MCP client %s connected (%d tools)", self.spec.name, len(catalog.tools))
            await self._adopt(catalog, force=True)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._sync_loop, session)
                if self.spec.is_ping_available:
                    tasks.start_soon(self._ping_loop, session)
                await self._wake.wait()
                if self._closed_by_upstream and not (self._stopping or self._reconnect):
                    what = "server process exited" if self.spec.connection_type == "stdio" else "connection closed"
                    raise ConnectionLost(what)
                tasks.cancel_scope.cancel()
        if not self._reconnect:
            self.health.state = ClientState.DISCONNECTED
        self.health.reason = "stopped" if self._stopping else None
        if not self._stopping:
            await self._on_change()
        return True

    async def _adopt(self, catalog: UpstreamCatalog, *, force: bool = False) -> None:
        self.health.last_sync = datetime.now(UTC)
        changed = catalog != self.health.catalog
        self.health.catalog = catalog
        if changed or force:
            await self._on_change()

    async def _sync_loop(self, session: ClientSession) -> None:
        while True:
            with anyio.move_on_after(self._sync_interval):
                await self._list_changed.wait()
            self._list_changed.clear()
            try:
                with anyio.fail_after(self._timings.request_timeout):
                    catalog = await fetch_catalog(session)
            except TimeoutError:
                raise ConnectionLost(f"listing tools timed out after {self._timings.request_timeout:g}s") from None
            except MCPError as exc:
                if self._own.session_gone:
                    raise ConnectionLost("the upstream ended the session") from None
                if exc.code == types.CONNECTION_CLOSED:
                    raise ConnectionLost("connection closed") from None
                log.warning("MCP client %s: tool sync failed: %s", self.spec.name, exc.message)
                continue
            await self._adopt(catalog)

    async def _ping_loop(self, session: ClientSession) -> None:
        timeout = self._timings.ping_timeout
        while True:
            await anyio.sleep(self._timings.ping_interval)
            try:
                with anyio.fail_after(timeout):
                    await session.send_ping()
            except TimeoutError:
                raise ConnectionLost(f"ping timed out after {timeout:g}s") from None
            except MCPError as exc:
                # Any other JSON-RPC answer still proves the upstream is there.
                if self._own.session_gone:
                    raise ConnectionLost("the upstream ended the session") from None
                if exc.code in (types.CONNECTION_CLOSED, types.REQUEST_TIMEOUT):
                    raise ConnectionLost(f"ping failed: {exc.message}") from None

    async def _on_message(self, message: IncomingMessage) -> None:
        # Runs inside the session's receive loop: only signal here, the sync loop does the I/O.
        if isinstance(message, _LIST_CHANGED):
            self._list_changed.set()
        elif isinstance(message, Exception):
            log.debug("MCP client %s: transport reported %r", self.spec.name, message)

    def _upstream_closed(self) -> None:
        self._closed_by_upstream = True
        self._wake.set()
