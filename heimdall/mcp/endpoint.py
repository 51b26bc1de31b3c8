"""The ASGI endpoint in front of the SDK's session manager: who is calling /mcp, and may they.

Rules (reference.md §2.5, with W13): the caller's virtual key comes from ``x-bf-vk``,
``x-bf-virtual-key``, ``Authorization: Bearer sk-bf-…`` or ``x-api-key``. Without one the caller
gets the global view, unless ``enforce_auth_on_inference`` is on (401). An MCP session belongs to
the identity that created it: another identity presenting its id gets 404, as if it did not exist.
"""

from __future__ import annotations

import orjson

from heimdall.asgi import JSON_HEADERS, Message, Receive, Scope, Send, header_map, send_bytes, send_error
from heimdall.errors import Forbidden, GatewayError, Unauthorized
from heimdall.gateway import Gateway
from heimdall.governance.virtual_keys import VirtualKeyRuntime, extract_virtual_key
from heimdall.mcp.catalog import Filters
from heimdall.mcp.runtime import Caller
from heimdall.mcp.server import CURRENT_REQUEST, GatewayMCPServer, MCPRequest

_SESSION_HEADER = b"mcp-session-id"
_SESSION_NOT_FOUND = orjson.dumps(
    {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Session not found"}}
)


def authenticate_mcp(gateway: Gateway, headers: dict[bytes, bytes]) -> VirtualKeyRuntime | None:
    snapshot = gateway.snapshot
    value = extract_virtual_key(headers)
    if value is None:
        if snapshot.client.enforce_auth_on_inference:
            raise Unauthorized("virtual key header required to access mcp server", code="virtual_key_required")
        return None
    vk = snapshot.virtual_keys_by_hash.get(gateway.box.lookup_hash(value))
    if vk is None:
        raise Unauthorized("virtual key not found", code="invalid_virtual_key")
    if not vk.is_active:
        raise Forbidden(f"virtual key {vk.name!r} is inactive", code="virtual_key_inactive")
    return vk


class MCPEndpoint:
    """``/mcp`` (POST, GET, DELETE)."""

    def __init__(self, gateway: Gateway, server: GatewayMCPServer) -> None:
        self.gateway = gateway
        self.server = server
        #: MCP session id -> the identity that created it.
        self.owners: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope)
        try:
            vk = authenticate_mcp(self.gateway, headers)
        except GatewayError as exc:
            await send_error(send, exc)
            return
        owner = f"vk:{vk.id}" if vk else "anonymous"
        session_id = headers.get(_SESSION_HEADER, b"").decode("latin-1")
        if session_id:
            known_owner = self.owners.get(session_id)
            if known_owner is not None and known_owner != owner:
                await send_bytes(send, 404, _SESSION_NOT_FOUND, JSON_HEADERS)
                return
        text_headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers.items()}
        request = MCPRequest(
            vk=vk,
            caller=Caller(
                vk_id=vk.id if vk else None,
                vk_name=vk.name if vk else None,
                request_headers=text_headers,
                on_mcp_gateway=True,
            ),
            filters=Filters.from_headers(text_headers),
        )

        async def send_recording_session(message: Message) -> None:
            if message["type"] == "http.response.start" and not session_id:
                for name, value in message.get("headers", []):
                    if name.lower() == _SESSION_HEADER:
                        self.owners[value.decode("latin-1")] = owner
            await send(message)

        token = CURRENT_REQUEST.set(request)
        try:
            await self.server.sessions_manager.handle_request(scope, receive, send_recording_session)
        finally:
            CURRENT_REQUEST.reset(token)
            if scope.get("method") == "DELETE" and session_id:
                self.owners.pop(session_id, None)
                self.server.forget(session_id)
