"""One MCP client session to an upstream server: transport, per-request credentials, one request.

Every HTTP request the gateway sends upstream (``initialize``, lists, pings, calls, the GET event
stream) passes through ``CredentialAuth``, which asks the ``CredentialResolver`` for headers at
that moment. Who is asking travels in the ``REQUEST_AUTH`` context variable: the SDK transports
run each POST in the context of the task that sent the message (``ContextSendStream``), so a
call made by a user's task carries that user's ``RequestAuth`` even over a shared session.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import anyio
import httpx2
import mcp.types as types
from mcp.client.session import ClientSession, MessageHandlerFnT
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from heimdall.mcp.runtime import (
    Caller,
    CredentialResolver,
    MCPClientSpec,
    MCPGatewayError,
    UpstreamUnavailableError,
    forwarded_headers,
)
from heimdall.mcp.upstream_errors import SessionExpiredError, UpstreamProtocolError

__all__ = [
    "CLIENT_INFO",
    "REQUEST_AUTH",
    "PROTOCOL_HEADERS",
    "CredentialAuth",
    "DirectTarget",
    "OpenSession",
    "RequestAuth",
    "UpstreamTimings",
    "acting_as",
    "caller_headers",
    "is_challenge",
    "open_session",
    "refresh_headers",
    "resolve_headers",
    "send_request",
    "wire",
]

log = logging.getLogger(__name__)

CLIENT_INFO: Final = types.Implementation(name="heimdall", version="0.1.0")
_INSUFFICIENT_SCOPE = re.compile(r'error\s*=\s*"?insufficient_scope', re.IGNORECASE)
ResultT = TypeVar("ResultT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class UpstreamTimings:
    """Every delay and bound of the upstream side, in seconds (tests shrink them)."""

    #: HTTP connect/write bound, and the bound on ``initialize`` plus the first listing.
    connect_timeout: float = 30.0
    #: Read bound of the gateway's own requests (lists, pings); calls pass their own timeout.
    request_timeout: float = 60.0
    #: How long a server-sent event stream may stay silent.
    sse_read_timeout: float = 300.0
    ping_interval: float = 15.0
    ping_timeout: float = 10.0
    #: Reconnect backoff: ``backoff_initial`` doubling up to ``backoff_max``, times 1 ± ``backoff_jitter``.
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_jitter: float = 0.2
    #: A per-user session unused this long is closed.
    session_idle_timeout: float = 60.0
    #: Bound on closing one connection before its task is cancelled.
    close_timeout: float = 5.0


@dataclass(slots=True)
class RequestAuth:
    """Whose credentials the upstream requests of the current task carry, and what happened to them."""

    spec: MCPClientSpec
    caller: Caller | None
    #: Credential headers resolved up front; None asks the resolver on every request.
    headers: dict[str, str] | None = None
    #: Use ``headers`` as given and never consult the resolver (the admin's verification probe).
    fixed: bool = False
    #: Status of the last 401/403 challenge left unanswered, if any.
    challenge: int | None = None
    #: What the resolver raised while producing or refreshing headers.
    error: Exception | None = None
    #: The upstream answered 404 to a request carrying our session id: the session is gone.
    session_gone: bool = False


REQUEST_AUTH: ContextVar[RequestAuth | None] = ContextVar("heimdall_upstream_request_auth", default=None)


@contextlib.contextmanager
def acting_as(auth: RequestAuth) -> Iterator[RequestAuth]:
    """Send the upstream requests made inside the block with ``auth``'s credentials."""
    token = REQUEST_AUTH.set(auth)
    try:
        yield auth
    finally:
        REQUEST_AUTH.reset(token)


#: Headers the transport itself sets on every upstream request; forwarded caller headers never replace them.
PROTOCOL_HEADERS: Final = frozenset(
    {
        "accept",
        "connection",
        "content-length",
        "content-type",
        "expect",
        "host",
        "keep-alive",
        "mcp-protocol-version",
        "mcp-session-id",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def caller_headers(spec: MCPClientSpec, caller: Caller | None) -> dict[str, str]:
    """``forwarded_headers`` minus the transport's own (a caller's /mcp ``mcp-session-id`` is not the upstream's)."""
    return {
        name: value for name, value in forwarded_headers(spec, caller).items() if name.lower() not in PROTOCOL_HEADERS
    }


async def resolve_headers(
    credentials: CredentialResolver, auth: RequestAuth | None, spec: MCPClientSpec
) -> dict[str, str] | None:
    """The resolver's headers for ``auth``'s caller, or None when it raised (recorded on ``auth``)."""
    caller = auth.caller if auth is not None else None
    try:
        return await credentials.headers_for(spec, caller)
    except Exception as exc:
        if auth is not None:
            auth.error = exc
        if not isinstance(exc, MCPGatewayError):
            log.exception("credential lookup for MCP client %s failed", spec.name)
        return None


async def refresh_headers(
    credentials: CredentialResolver, auth: RequestAuth | None, spec: MCPClientSpec, challenge: str | None
) -> dict[str, str] | None:
    """After a 401/403 challenge: fresh headers worth one retry, or None.

    Declining still re-asks the resolver so that it can raise ``AuthRequired`` (recorded on ``auth``).
    """
    caller = auth.caller if auth is not None else None
    try:
        retry = await credentials.unauthorized(spec, caller, challenge)
    except Exception as exc:
        if auth is not None:
            auth.error = exc
        if not isinstance(exc, MCPGatewayError):
            log.exception("refreshing the credential of MCP client %s failed", spec.name)
        return None
    headers = await resolve_headers(credentials, auth, spec)
    return headers if retry else None


def is_challenge(status: int, www_authenticate: str | None) -> bool:
    """401, or 403 with ``error="insufficient_scope"`` (RFC 6750 §3.1)."""
    if status == 401:
        return True
    return status == 403 and bool(_INSUFFICIENT_SCOPE.search(www_authenticate or ""))


def _is_challenge(response: httpx2.Response) -> bool:
    return is_challenge(response.status_code, response.headers.get("www-authenticate"))


class CredentialAuth(httpx2.Auth):
    """Puts the resolver's headers on every upstream HTTP request; on a challenge, refreshes and retries once.

    Never raises: an exception inside the transport's tasks would tear the whole session down, so
    resolver failures are recorded on the ``RequestAuth`` and the request goes out without them
    (the upstream then refuses it and the caller sees the recorded error).

    It also remembers the ``MCP-Session-Id`` the upstream assigned (MCP 2025-11-25 transports,
    §Session Management), so that ``direct.DirectClient`` can POST into the same session.
    """

    def __init__(self, spec: MCPClientSpec, credentials: CredentialResolver) -> None:
        self.spec = spec
        self.credentials = credentials
        self.session_id: str | None = None

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        auth = REQUEST_AUTH.get()
        spec = auth.spec if auth is not None else self.spec
        caller = auth.caller if auth is not None else None
        if auth is not None and auth.headers is not None:
            headers = auth.headers
        else:
            headers = await resolve_headers(self.credentials, auth, spec) or {}
        request.headers.update(caller_headers(spec, caller))
        request.headers.update(headers)
        response = yield request
        self._note_session(response)
        if auth is not None and response.status_code == 404 and "mcp-session-id" in request.headers:
            auth.session_gone = True  # MCP 2025-11-25 transports: a 404 for a session id means start a new session
        if not _is_challenge(response):
            return
        if auth is not None:
            auth.challenge = response.status_code
        if auth is not None and auth.fixed:
            return
        fresh = await refresh_headers(self.credentials, auth, spec, response.headers.get("www-authenticate"))
        if fresh is None:
            return
        if auth is not None and auth.headers is not None:
            auth.headers = fresh
        request.headers.update(fresh)
        response = yield request
        self._note_session(response)
        if auth is not None:
            auth.challenge = response.status_code if _is_challenge(response) else None

    def _note_session(self, response: httpx2.Response) -> None:
        session_id = response.headers.get("mcp-session-id")
        if session_id and response.status_code < 300:
            self.session_id = session_id


class _WatchedReadStream:
    """The transport's read stream, reporting when the upstream side has closed it (stdio exit, SSE end)."""

    def __init__(self, inner: ReadStream[SessionMessage | Exception], on_close: Callable[[], None]) -> None:
        self._inner = inner
        self._on_close = on_close

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_close()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._inner.aclose()


_Streams = tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]


@contextlib.asynccontextmanager
async def _open_streams(
    spec: MCPClientSpec, credentials: CredentialResolver, timings: UpstreamTimings
) -> AsyncIterator[tuple[_Streams, CredentialAuth | None]]:
    if spec.connection_type == "stdio":
        if spec.stdio is None:
            raise ValueError("stdio client without a command")
        params = StdioServerParameters(
            command=spec.stdio.command, args=list(spec.stdio.args), env=dict(spec.stdio.env), cwd=spec.stdio.cwd
        )
        async with stdio_client(params, errlog=sys.stderr) as streams:
            yield streams, None
        return
    if not spec.url:
        raise ValueError(f"{spec.connection_type} client without a URL")
    auth = CredentialAuth(spec, credentials)
    timeout = httpx2.Timeout(timings.connect_timeout, read=timings.sse_read_timeout)
    if spec.connection_type == "sse":

        def http_client(
            headers: dict[str, str] | None = None,
            timeout: httpx2.Timeout | None = None,
            auth: httpx2.Auth | None = None,
        ) -> httpx2.AsyncClient:
            return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth)

        async with sse_client(
            spec.url,
            timeout=timings.connect_timeout,
            sse_read_timeout=timings.sse_read_timeout,
            httpx_client_factory=http_client,
            auth=auth,
        ) as streams:
            yield streams, None
        return
    async with (
        httpx2.AsyncClient(auth=auth, timeout=timeout) as http,
        streamable_http_client(spec.url, http_client=http) as streams,
    ):
        yield streams, auth


@dataclass(frozen=True, slots=True)
class DirectTarget:
    """Where single requests can be POSTed into an SDK-opened streamable HTTP session (see ``direct.py``)."""

    url: str
    #: The upstream's ``MCP-Session-Id``; None for an upstream that does not use sessions.
    session_id: str | None
    #: The negotiated version, sent as ``MCP-Protocol-Version`` (MCP 2025-11-25 transports §Protocol Version Header).
    protocol_version: str


@dataclass(slots=True)
class OpenSession:
    session: ClientSession
    initialize: types.InitializeResult
    #: Set for streamable HTTP upstreams speaking a handshake-era version; None for SSE and stdio.
    direct: DirectTarget | None = None


@contextlib.asynccontextmanager
async def open_session(
    spec: MCPClientSpec,
    credentials: CredentialResolver,
    timings: UpstreamTimings,
    *,
    on_message: MessageHandlerFnT | None = None,
    on_close: Callable[[], None] = lambda: None,
) -> AsyncIterator[OpenSession]:
    """Open the transport, start a ``ClientSession`` and run the MCP 2025-11-25 ``initialize`` handshake.

    Must be entered and left by the same task (anyio cancel scopes). The credentials used are the
    ``RequestAuth`` current in that task. ``on_close`` runs when the upstream closes the stream.

    Raises:
        TimeoutError: ``initialize`` took longer than ``timings.connect_timeout``.
    """
    async with _open_streams(spec, credentials, timings) as ((read, write), http_auth):
        async with ClientSession(
            _WatchedReadStream(read, on_close),
            write,
            read_timeout_seconds=timings.request_timeout,
            message_handler=on_message,
            client_info=CLIENT_INFO,
        ) as session:
            with anyio.fail_after(timings.connect_timeout):
                result = await session.initialize()
            direct = None
            if http_auth is not None and spec.url and result.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
                direct = DirectTarget(spec.url, http_auth.session_id, str(result.protocol_version))
            yield OpenSession(session, result, direct)


async def send_request(
    session: ClientSession,
    request: types.ClientRequest,
    result_type: type[ResultT],
    auth: RequestAuth,
    limit: float,
    *,
    budget: float | None = None,
    unavailable: Callable[[], str] = lambda: "connection closed",
) -> ResultT:
    """Send one request over ``session`` as ``auth`` within ``limit`` seconds, result proxied verbatim.

    The result is not checked against the tool's ``outputSchema`` (unlike ``ClientSession.call_tool``).
    ``budget`` is the caller's whole time budget, named in the timeout message (default ``limit``).

    Raises:
        AuthRequired, CredentialUnavailable: what the resolver raised for this caller.
        UpstreamUnavailableError: transport failure, timeout, or credentials the upstream refused.
        SessionExpiredError: the upstream answered 404 for our session id.
        UpstreamProtocolError: the upstream answered with a JSON-RPC error.
    """
    name = auth.spec.name
    budget = limit if budget is None else budget
    with acting_as(auth):
        try:
            with anyio.fail_after(limit):
                return await session.send_request(request, result_type)
        except TimeoutError:
            raise UpstreamUnavailableError(f"{name} timed out after {budget:g}s") from None
        except MCPError as exc:
            if auth.error is not None:
                if isinstance(auth.error, MCPGatewayError):
                    raise auth.error from None
                raise UpstreamUnavailableError(f"{name}: credential lookup failed") from auth.error
            if auth.challenge is not None:
                raise UpstreamUnavailableError(f"{name} rejected the credentials (HTTP {auth.challenge})") from None
            if exc.code == types.CONNECTION_CLOSED:
                raise UpstreamUnavailableError(f"{name} is not connected: {unavailable()}") from None
            if exc.code == types.REQUEST_TIMEOUT:
                raise UpstreamUnavailableError(f"{name} timed out after {budget:g}s") from None
            if auth.session_gone:
                raise SessionExpiredError(f"{name} is not connected: the upstream ended the session") from None
            raise UpstreamProtocolError(f"{name} returned an error: {exc.message}", exc.error) from None
        except ValidationError as exc:
            raise UpstreamUnavailableError(f"{name} sent an invalid response ({exc.error_count()} errors)") from None


def wire(model: BaseModel) -> dict[str, Any]:
    """A protocol object as MCP wire JSON."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
