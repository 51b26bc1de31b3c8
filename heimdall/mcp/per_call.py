"""Upstream sessions opened for callers of per-user clients (auth type per_user_oauth), and the one-off probe.

A per-user upstream gets no shared connection: each calling identity (user id, else virtual key,
else anonymous /mcp session) gets its own MCP session, opened with that identity's headers from the
resolver and kept for ``session_idle_timeout`` seconds of disuse. Sessions are never shared between
identities, because an SDK upstream binds a session to the credential that created it; a session
is replaced when the resolver starts handing out different headers (a refreshed token).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import mcp.types as types
from mcp.client.session import ClientSession
from pydantic import BaseModel

from heimdall.mcp.connection import DiscoveredCatalog, fetch_catalog
from heimdall.mcp.direct import DirectClient, DirectFallback
from heimdall.mcp.runtime import (
    Caller,
    CredentialResolver,
    MCPClientSpec,
    MCPGatewayError,
    UpstreamUnavailableError,
)
from heimdall.mcp.transports import (
    REQUEST_AUTH,
    DirectTarget,
    RequestAuth,
    UpstreamTimings,
    acting_as,
    open_session,
    send_request,
)
from heimdall.mcp.upstream_errors import SessionExpiredError, describe_error, is_failure, report_crash

__all__ = ["UserSessionPool", "identity_key", "probe"]

log = logging.getLogger(__name__)
ResultT = TypeVar("ResultT", bound=BaseModel)


def identity_key(caller: Caller | None) -> str | None:
    """Which identity an upstream session belongs to; None when the caller has none (the session is not kept)."""
    if caller is None:
        return None
    if caller.user_id:
        return f"user:{caller.user_id}"
    if caller.vk_id:
        return f"vk:{caller.vk_id}"
    if caller.session_key:
        return f"session:{caller.session_key}"
    return None


class _UserSession:
    """One caller's session to one upstream, owned by its own task."""

    def __init__(
        self,
        spec: MCPClientSpec,
        caller: Caller | None,
        headers: dict[str, str],
        credentials: CredentialResolver,
        timings: UpstreamTimings,
        on_end: Callable[[_UserSession], None],
    ) -> None:
        self.spec = spec
        self.headers = dict(headers)
        self._on_end = on_end
        self.session: ClientSession | None = None
        #: Where requests can be POSTed into this session directly (streamable HTTP only).
        self.direct: DirectTarget | None = None
        self.reason: str | None = None
        self.error: Exception | None = None
        self.ready = asyncio.Event()
        self.in_flight = 0
        self.last_used = time.monotonic()
        self._credentials = credentials
        self._timings = timings
        self._auth = RequestAuth(spec, caller, headers=dict(headers))
        self._wake = asyncio.Event()
        self._stopping = False
        self._ended = False
        self.task = asyncio.create_task(self._run(), name=f"mcp-user-session-{spec.name}")
        self.task.add_done_callback(report_crash)

    @property
    def alive(self) -> bool:
        return self.session is not None and not (self._stopping or self._ended)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def unavailable_reason(self) -> str:
        return self.reason or "connection closed"

    def adopt_headers(self, headers: dict[str, str]) -> None:
        """A call refreshed the credential on a 401 and succeeded: later requests use the new headers."""
        self.headers = dict(headers)
        self._auth.headers = dict(headers)

    async def _run(self) -> None:
        REQUEST_AUTH.set(self._auth)
        try:
            async with open_session(
                self.spec, self._credentials, self._timings, on_close=self._upstream_closed
            ) as opened:
                self.session = opened.session
                self.direct = opened.direct
                if self._auth.headers is not None:
                    self.headers = dict(self._auth.headers)  # refreshed on a 401 during initialize
                self.ready.set()
                await self._until_idle()
                self._ended = True  # no new calls while the session shuts down
        except BaseException as exc:
            task = asyncio.current_task()
            if not is_failure(exc) or (task is not None and task.cancelling() and not self._stopping):
                raise
            self.reason = describe_error(exc, self._auth, self._timings)
            self.error = self._auth.error
            log.info("MCP client %s: per-user session ended: %s", self.spec.name, self.reason)
        finally:
            self.session = None
            self.direct = None
            self._ended = True
            self.ready.set()
            self._on_end(self)

    async def _until_idle(self) -> None:
        idle = self._timings.session_idle_timeout
        while not (self._stopping or self._ended):
            remaining = self.last_used + idle - time.monotonic()
            if self.in_flight == 0 and remaining <= 0:
                return
            with anyio.move_on_after(remaining if remaining > 0 else idle):
                await self._wake.wait()
            self._wake.clear()

    def _upstream_closed(self) -> None:
        self._ended = True
        self._wake.set()

    def transport_failed(self) -> None:
        """A direct request could not reach the upstream: end this session as a failed SDK transport would."""
        self._upstream_closed()


@dataclass(frozen=True, slots=True)
class _Key:
    client_id: str
    identity: str


class UserSessionPool:
    """Per-identity sessions to per-user upstreams, opened on first use and closed when idle."""

    def __init__(self, credentials: CredentialResolver, timings: UpstreamTimings, direct: DirectClient) -> None:
        self._credentials = credentials
        self._timings = timings
        self._direct = direct
        self._sessions: dict[_Key, _UserSession] = {}
        self._retired: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return sum(1 for s in self._sessions.values() if s.alive)

    async def request(
        self,
        spec: MCPClientSpec,
        caller: Caller | None,
        request: types.ClientRequest,
        result_type: type[ResultT],
        limit: float,
    ) -> ResultT:
        """Send ``request`` in the caller's own session to the upstream, within ``limit`` seconds in all.

        Raises:
            AuthRequired: the resolver has no usable token for this caller.
            UpstreamUnavailableError, MCPError: as ``transports.send_request``.
        """
        headers = await self._credentials.headers_for(spec, caller)
        deadline = time.monotonic() + limit
        for attempt in range(2):
            host, fresh = await self._session_for(spec, caller, headers, deadline, limit)
            auth = RequestAuth(spec, caller, headers=dict(host.headers))
            host.in_flight += 1
            try:
                result = await self._send(host, request, result_type, auth, deadline, limit)
            except SessionExpiredError:
                host.stop()
                if fresh or attempt:
                    raise
                continue
            finally:
                host.in_flight -= 1
                host.last_used = time.monotonic()
                if identity_key(caller) is None:
                    self._discard(host)
            if auth.headers is not None and auth.headers != host.headers:
                host.adopt_headers(auth.headers)
            return result
        raise AssertionError("unreachable")

    async def _send(
        self,
        host: _UserSession,
        request: types.ClientRequest,
        result_type: type[ResultT],
        auth: RequestAuth,
        deadline: float,
        limit: float,
    ) -> ResultT:
        """Through the direct pool when the session allows it (see ``direct.py``), else through the SDK session."""
        if host.direct is not None:
            try:
                return await self._direct.request(
                    host.direct,
                    request,
                    result_type,
                    auth,
                    max(deadline - time.monotonic(), 0.001),
                    budget=limit,
                    unavailable=host.unavailable_reason,
                    on_broken=host.transport_failed,
                )
            except DirectFallback:
                auth.challenge = auth.error = None
                auth.session_gone = False
        assert host.session is not None
        return await send_request(
            host.session,
            request,
            result_type,
            auth,
            max(deadline - time.monotonic(), 0.001),
            budget=limit,
            unavailable=host.unavailable_reason,
        )

    async def _session_for(
        self, spec: MCPClientSpec, caller: Caller | None, headers: dict[str, str], deadline: float, limit: float
    ) -> tuple[_UserSession, bool]:
        """The caller's live session (and whether it was just opened), opening one if needed."""
        identity = identity_key(caller)
        key = _Key(spec.id, identity) if identity is not None else None
        host = self._sessions.get(key) if key is not None else None
        if host is not None and (host.headers != headers or (host.ready.is_set() and not host.alive)):
            self._retire(key)
            host = None
        fresh = host is None
        if host is None:
            host = _UserSession(spec, caller, headers, self._credentials, self._timings, self._forget)
            if key is not None:
                self._sessions[key] = host
        with anyio.move_on_after(max(deadline - time.monotonic(), 0)):
            await host.ready.wait()
        if host.session is None:
            if key is not None and self._sessions.get(key) is host:
                self._retire(key)
            else:
                self._discard(host)
            if not host.ready.is_set():
                raise UpstreamUnavailableError(f"{spec.name} timed out after {limit:g}s")
            if isinstance(host.error, MCPGatewayError):
                raise host.error
            raise UpstreamUnavailableError(f"{spec.name} is not connected: {host.reason or 'connection closed'}")
        return host, fresh

    def _retire(self, key: _Key | None) -> None:
        host = self._sessions.pop(key, None) if key is not None else None
        if host is not None:
            self._discard(host)

    def _discard(self, host: _UserSession) -> None:
        host.stop()
        if not host.task.done():
            self._retired.add(host.task)
            host.task.add_done_callback(self._retired.discard)

    def drop_client(self, client_id: str) -> None:
        """Close every session to this client (it was removed or its connection settings changed)."""
        for key in [k for k in self._sessions if k.client_id == client_id]:
            self._retire(key)

    def _forget(self, host: _UserSession) -> None:
        """A session's task ended (idle, upstream gone, retired): drop it from the pool if still there."""
        for key in [k for k, s in self._sessions.items() if s is host]:
            del self._sessions[key]

    async def close(self) -> None:
        for key in list(self._sessions):
            self._retire(key)
        tasks = set(self._retired)
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self._timings.close_timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=self._timings.close_timeout)


async def probe(
    spec: MCPClientSpec, headers: dict[str, str], credentials: CredentialResolver, timings: UpstreamTimings
) -> DiscoveredCatalog:
    """Connect once with exactly ``headers``, list everything, disconnect.

    Raises:
        UpstreamUnavailableError: could not connect or list (the message says why).
    """
    auth = RequestAuth(spec, None, headers=dict(headers), fixed=True)
    try:
        with acting_as(auth):
            async with open_session(spec, credentials, timings) as opened:
                with anyio.fail_after(timings.connect_timeout):
                    catalog = await fetch_catalog(opened.session)
    except Exception as exc:
        raise UpstreamUnavailableError(f"{spec.name}: {describe_error(exc, auth, timings)}") from None
    return catalog.to_wire()
