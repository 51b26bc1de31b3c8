"""/mcp fast path: ``tools/call``, ``tools/list`` and ``ping`` on an established session, answered without the SDK.

Why it exists: through the SDK's ``StreamableHTTPSessionManager`` one POST costs a Starlette
``Request``, a memory-object stream pair, an ``EventSourceResponse`` with its own task group, a
dispatcher task, pydantic validation of the whole JSON-RPC envelope and the answer's SSE framing —
more gateway CPU than the upstream call itself. Here the hot requests are parsed once and answered
with one ``application/json`` body.

Why it is allowed: MCP 2025-11-25 Basic / Transports, §Streamable HTTP, "Sending Messages to the
Server", item 5: for a POSTed JSON-RPC request "the server MUST either return
``Content-Type: text/event-stream``, to initiate an SSE stream, or ``Content-Type:
application/json``, to return one JSON object. The client MUST support both these cases." These
handlers never send requests or notifications related to the call (the only thing an SSE answer
would add), so a JSON answer loses nothing. Server-to-client notifications (``list_changed``) keep
flowing over the session's GET stream, which stays with the SDK.

What it takes: a single JSON-RPC request for one of ``FAST_METHODS`` POSTed on a session that

* the SDK's session manager holds and has not terminated, is not bound to an SDK-authenticated
  principal (the SDK checks that binding itself), and whose era is a handshake version;
* already went through one of ``GatewayMCPServer``'s handlers, so the gateway holds its
  ``ServerSession`` (for ``list_changed`` delivery) and the negotiated version and client
  capabilities are the SDK's own.

Everything else — ``initialize``, notifications, responses, GET, DELETE, other methods, batches,
bodies that do not parse or validate, wrong ``Accept``/``Content-Type`` — goes to the SDK unchanged
(the body is replayed), so every error the SDK produces stays byte-for-byte the SDK's.

What it answers: exactly what ``heimdall/mcp/server.py``'s handlers answer (same catalog lookup,
``isError`` texts, lazy-auth text or URL-elicitation error ``-32042``), shaped like the SDK's runner
shapes it: results pass ``mcp_types.methods.serialize_server_result`` for the session's version,
handler exceptions map through the dispatcher's ``handler_exception_to_error_data`` (anything else
becomes code 0 with ``str(exc)``, as ``JSONRPCDispatcher`` does). A client's ``notifications/cancelled``
for a fast ``tools/call`` in flight stops it and is answered ``-32800 Request cancelled``, as the SDK
transport answers a cancelled request (the notification still goes on to the SDK). While a fast
request runs it holds the SDK session's idle timer, as the SDK transport does for its own requests.

Not reproduced: the SDK's OpenTelemetry span per request (a no-op unless an exporter is installed).
The fast path reads a few private attributes of the installed SDK (2.3.0: the manager's
``_server_instances``/``_session_owners``, the transport's ``_requests_in_flight``/``_idle_timeout``);
``_supported`` checks they exist and otherwise leaves every request to the SDK.

Wiring, in ``MCPEndpoint.__call__`` after authentication and the owner check::

    receive = BufferedReceive(receive)
    if await self.fast_path.handle(request, scope, receive, send):
        return
    ... hand (scope, receive, send) to the SDK's session manager as before
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Coroutine
from typing import Any, Final

import anyio
import mcp.types as types
import orjson
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.session import ServerSession
from mcp.server.streamable_http import REQUEST_CANCELLED, StreamableHTTPServerTransport
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import cancelled_request_id_from_params, handler_exception_to_error_data
from mcp_types import methods as wire_methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from heimdall.asgi import Message, Receive, Scope, Send
from heimdall.mcp.server import GatewayMCPServer, MCPRequest

__all__ = ["FAST_METHODS", "BufferedReceive", "FastPath"]

log = logging.getLogger(__name__)

FAST_METHODS: Final = frozenset({"tools/call", "tools/list", "ping"})
_HEADERS: Final = frozenset({b"mcp-session-id", b"mcp-protocol-version", b"accept", b"content-type"})
#: The params model the SDK validates each method's params against before calling the handler.
_PARAMS: Final[dict[str, type[BaseModel]]] = {
    "tools/call": types.CallToolRequestParams,
    "tools/list": types.PaginatedRequestParams,
    "ping": types.RequestParams,
}


class BufferedReceive:
    """An ASGI ``receive`` that can read the body ahead and still hand the same messages to the next app."""

    __slots__ = ("_buffer", "_receive")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._buffer: deque[Message] = deque()

    async def read_body(self, limit: int) -> bytes | None:
        """The whole body; None when it is longer than ``limit`` or the client left (what was read is replayed)."""
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await self._receive()
            self._buffer.append(message)
            if message["type"] != "http.request":
                return None
            chunk: bytes = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def __call__(self) -> Message:
        if self._buffer:
            return self._buffer.popleft()
        return await self._receive()


def _accepts_json_and_sse(accept: str) -> bool:
    """The SDK transport's own check (``check_accept_headers``, RFC 9110 §12.5.1 wildcards)."""
    types_ = {part.strip().split(";")[0].strip().lower() for part in accept.split(",")}
    wildcard = "*/*" in types_
    has_json = wildcard or "application/json" in types_ or "application/*" in types_
    has_sse = wildcard or "text/event-stream" in types_ or "text/*" in types_
    return has_json and has_sse


def _is_json(content_type: str) -> bool:
    """The SDK transport's ``_check_content_type``."""
    return any(part.strip() == "application/json" for part in content_type.split(";")[0].split(","))


def _supported(server: GatewayMCPServer) -> bool:
    """Whether the SDK is configured the way the fast path reproduces (else every request goes to the SDK)."""
    manager = server.sessions_manager
    return (
        not manager.stateless
        and manager.security_settings is None
        and not server.server.cache_hints
        and all(type(m).__name__ == "OpenTelemetryMiddleware" for m in server.server.middleware)
        and isinstance(getattr(manager, "_server_instances", None), dict)
        and isinstance(getattr(manager, "_session_owners", None), dict)
        and {"_requests_in_flight", "_idle_timeout", "idle_scope"} <= set(vars(StreamableHTTPServerTransport(None)))
    )


def _hold(transport: StreamableHTTPServerTransport) -> float | None:
    """Keep the SDK session from idling out while a fast request runs, as its ``handle_request`` does.

    Returns the idle timeout to restart with ``_release`` (None: the session has no idle timer).
    """
    timeout: float | None = getattr(transport, "_idle_timeout", None)
    scope = transport.idle_scope
    if scope is None or timeout is None:
        return None
    if not transport._requests_in_flight:
        scope.deadline = math.inf  # with a request (or the GET stream) in flight it already is
    transport._requests_in_flight += 1
    return timeout


def _release(transport: StreamableHTTPServerTransport, timeout: float | None) -> None:
    scope = transport.idle_scope
    if timeout is None or scope is None:
        return
    transport._requests_in_flight -= 1
    if not transport._requests_in_flight:
        scope.deadline = anyio.current_time() + timeout


class FastPath:
    """Answers the hot requests of established /mcp sessions; see the module docstring for when it applies."""

    def __init__(self, server: GatewayMCPServer) -> None:
        self.server = server
        self.enabled = _supported(server)
        #: ``tools/call`` requests in flight, by (session id, request id as the SDK correlates it).
        self._calls: dict[tuple[str, str | int], asyncio.Future[dict[str, Any]]] = {}
        ping = server.server.get_request_handler("ping")
        default_ping = ping is not None and getattr(ping.handler, "__name__", "") == "_ping_handler"
        #: The methods answered here: ``ping`` only while the SDK's own default handler would answer it.
        self.methods = FAST_METHODS if default_ping else FAST_METHODS - {"ping"}

    async def handle(self, request: MCPRequest, scope: Scope, receive: BufferedReceive, send: Send) -> bool:
        """Answer the request and return True, or return False (body replayable from ``receive``) for the SDK."""
        if not self.enabled or scope.get("method") != "POST":
            return False
        wanted: dict[bytes, str] = {}
        for name, value in scope["headers"]:
            if name in _HEADERS and name not in wanted:  # the first occurrence wins, as in Starlette
                wanted[name] = value.decode("latin-1")
        session_id = wanted.get(b"mcp-session-id")
        version = wanted.get(b"mcp-protocol-version")
        accept = wanted.get(b"accept")
        content_type = wanted.get(b"content-type")
        if session_id is None or (version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS):
            return False
        session = self.server.sessions.get(session_id)
        if session is None or not _accepts_json_and_sse(accept or "") or not _is_json(content_type or ""):
            return False
        manager = self.server.sessions_manager
        transport: StreamableHTTPServerTransport | None = manager._server_instances.get(session_id)
        if transport is None or transport.is_terminated or session_id in manager._session_owners:
            return False
        if isinstance(scope.get("user"), AuthenticatedUser):
            return False
        idle = transport.idle_scope
        if idle is not None and idle.cancel_called:
            return False
        body = await receive.read_body(manager.max_request_body_size)
        if body is None:
            return False
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(message, dict):
            return False
        if message.get("method") == "notifications/cancelled" and "id" not in message:
            self._cancel(session_id, message.get("params"))
            return False  # the SDK sees it too, for the requests it is handling itself
        parsed = self._parse(message, session, self.methods)
        if parsed is None:
            return False
        request_id, method, params = parsed
        held = _hold(transport)
        try:
            if method == "tools/call":
                answer = await self._cancellable(session_id, request_id, self._answer(request, session, method, params))
            else:
                answer = await self._answer(request, session, method, params)
        finally:
            _release(transport, held)
        answer["jsonrpc"] = "2.0"
        answer["id"] = request_id
        payload = orjson.dumps(answer)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"mcp-session-id", session_id.encode("latin-1")),
                    (b"content-length", str(len(payload)).encode("latin-1")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return True

    async def _cancellable(
        self, session_id: str, request_id: str | int, work: Coroutine[Any, Any, dict[str, Any]]
    ) -> dict[str, Any]:
        """Run ``work`` so that the client's ``notifications/cancelled`` can stop it (MCP 2025-11-25 Utilities /
        Cancellation); a cancelled request is answered ``-32800 Request cancelled``, as the SDK transport does."""
        key = (session_id, coerce_request_id(request_id))
        task = asyncio.ensure_future(work)
        self._calls[key] = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves (awaiting the task has cancelled it too)
            return {"error": {"code": REQUEST_CANCELLED, "message": "Request cancelled"}}
        finally:
            if self._calls.get(key) is task:
                del self._calls[key]

    def _cancel(self, session_id: str, params: Any) -> None:
        request_id = cancelled_request_id_from_params(params if isinstance(params, dict) else None)
        if request_id is None:
            return
        task = self._calls.get((session_id, coerce_request_id(request_id)))
        if task is not None:
            task.cancel()

    @staticmethod
    def _parse(
        message: dict[str, Any], session: ServerSession, methods: frozenset[str]
    ) -> tuple[str | int, str, BaseModel] | None:
        """(id, method, validated params) of a request the fast path takes; None leaves it to the SDK."""
        if message.get("jsonrpc") != "2.0" or "result" in message:
            return None
        method = message.get("method")
        request_id = message.get("id")
        raw_params = message.get("params")
        if method not in methods or isinstance(request_id, bool) or not isinstance(request_id, str | int):
            return None
        if raw_params is not None and not isinstance(raw_params, dict):
            return None
        if not set(message) <= {"jsonrpc", "id", "method", "params"}:
            return None
        try:
            # The SDK runner's two checks, in its order: the version's wire surface, then the handler's model.
            wire_methods.validate_client_request(method, session.protocol_version, raw_params)
            params = _PARAMS[method].model_validate({} if raw_params is None else raw_params, by_name=False)
        except (KeyError, ValueError):  # pydantic's ValidationError is a ValueError
            return None
        return request_id, method, params

    async def _answer(self, request: MCPRequest, session: ServerSession, method: str, params: Any) -> dict[str, Any]:
        """``{"result": …}`` or ``{"error": …}``, as the SDK's runner and dispatcher would write them."""
        try:
            result: BaseModel
            if method == "tools/call":
                result = await self._call_tool(request, session, params)
            elif method == "tools/list":
                result = self._list_tools(request)
            else:
                result = types.EmptyResult()
            dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
            try:
                return {"result": wire_methods.serialize_server_result(method, session.protocol_version, dumped)}
            except ValidationError:
                log.exception("handler for %r returned an invalid result", method)
                raise MCPError(code=types.INTERNAL_ERROR, message="Handler returned an invalid result") from None
        except Exception as exc:
            error = handler_exception_to_error_data(exc)
            if error is None:
                log.exception("handler for %r raised", method)
                error = types.ErrorData(code=0, message=str(exc))
            return {"error": error.model_dump(by_alias=True, mode="json", exclude_unset=True)}

    # --- the handlers: the same code as the SDK path (GatewayMCPServer) -------------------------------

    def _list_tools(self, request: MCPRequest) -> types.ListToolsResult:
        return self.server.list_tools_for(request)

    async def _call_tool(
        self, request: MCPRequest, session: ServerSession, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        return await self.server.call_tool(request, session, params)
