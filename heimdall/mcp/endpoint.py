"""The ASGI endpoint in front of the SDK's session manager: who is calling /mcp, and may they.

Rules (reference.md §2.5, README "Identity", W13):

1. ``Authorization: Bearer <token>`` that is not a virtual key (``sk-bf-…``) is an access token
   issued by our authorization server (``heimdall.oauth.server.bearer``). Valid: the caller is the
   grant's identity, and identity headers (virtual-key headers, ``X-Bf-User-Id``) are ignored.
   Invalid, expired, revoked or for another audience: 401 ``invalid_token`` with a
   ``WWW-Authenticate`` challenge — unless no MCP client uses per-user OAuth, in which case the
   token is ignored as before. POST bodies are checked against the token's scopes (403
   ``insufficient_scope``; the mapping is in ``bearer``).
2. Otherwise, while any MCP client uses ``per_user_oauth``, a request without a virtual key gets
   401 with ``WWW-Authenticate: Bearer resource_metadata=…, scope=…`` (RFC 9728 §5.1).
3. Otherwise the caller's virtual key comes from ``x-bf-vk``, ``x-bf-virtual-key``,
   ``Authorization: Bearer sk-bf-…`` or ``x-api-key``. Without one the caller gets the global
   view, unless ``enforce_auth_on_inference`` is on (401).

An MCP session belongs to the identity that created it (``grant:<id>`` for OAuth callers): another
identity presenting its id gets 404, as if it did not exist.
"""

from __future__ import annotations

import orjson

from heimdall.asgi import (
    JSON_HEADERS,
    ClientDisconnected,
    Message,
    Receive,
    Scope,
    Send,
    header_map,
    read_body,
    send_bytes,
    send_error,
)
from heimdall.errors import Forbidden, GatewayError, Unauthorized
from heimdall.gateway import Gateway
from heimdall.governance.virtual_keys import VirtualKeyRuntime, extract_virtual_key
from heimdall.mcp.catalog import Filters
from heimdall.mcp.fast_path import BufferedReceive, FastPath
from heimdall.mcp.runtime import Caller
from heimdall.mcp.server import CURRENT_REQUEST, GatewayMCPServer, MCPRequest
from heimdall.oauth.server import bearer, metadata

_SESSION_HEADER = b"mcp-session-id"
_SESSION_NOT_FOUND = orjson.dumps(
    {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Session not found"}}
)
#: Headers that claim an identity: ignored (not even forwarded) when an access token says who the caller is.
_IDENTITY_HEADERS = frozenset(
    {"authorization", "cookie", "x-bf-vk", "x-bf-virtual-key", "x-api-key", "x-goog-api-key", "x-bf-user-id"}
)


def _rejection(exc: bearer.BearerRejected) -> GatewayError:
    error_class = Forbidden if exc.status_code == 403 else Unauthorized
    return error_class(exc.message, headers={"WWW-Authenticate": exc.www_authenticate})


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out an already-read body first, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


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
        self.fast_path = FastPath(server)

    async def _oauth_request(
        self, scope: Scope, receive: Receive, headers: dict[bytes, bytes], identity: bearer.BearerIdentity
    ) -> tuple[MCPRequest, Receive]:
        if scope.get("method") == "POST":
            body = await read_body(receive, headers, self.gateway.body_limit())
            bearer.check_scopes(self.gateway, identity, body)
            receive = _replaying(body, receive)
        text_headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in headers.items()
            if name.decode("latin-1") not in _IDENTITY_HEADERS
        }
        vk = identity.vk
        request = MCPRequest(
            vk=vk,
            caller=Caller(
                vk_id=vk.id if vk else None,
                vk_name=vk.name if vk else None,
                user_id=identity.user_id,
                session_key=identity.session_key,
                request_headers=text_headers,
                on_mcp_gateway=True,
            ),
            filters=Filters.from_headers(text_headers),
        )
        return request, receive

    def _key_request(self, headers: dict[bytes, bytes]) -> tuple[MCPRequest, str]:
        if metadata.available(self.gateway) and extract_virtual_key(headers) is None:
            raise _rejection(bearer.authentication_required(self.gateway))
        vk = authenticate_mcp(self.gateway, headers)
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
        return request, f"vk:{vk.id}" if vk else "anonymous"

    async def _identify(
        self, scope: Scope, receive: Receive, headers: dict[bytes, bytes]
    ) -> tuple[MCPRequest, str, Receive]:
        token = bearer.bearer_token(headers)
        identity = None
        if token is not None:
            try:
                identity = await bearer.authenticate(self.gateway, token)
            except bearer.BearerRejected as exc:
                if metadata.available(self.gateway):
                    raise _rejection(exc) from None
        if identity is None:
            request, owner = self._key_request(headers)
            return request, owner, receive
        try:
            request, receive = await self._oauth_request(scope, receive, headers, identity)
        except bearer.BearerRejected as exc:
            raise _rejection(exc) from None
        return request, identity.owner, receive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope)
        try:
            request, owner, receive = await self._identify(scope, receive, headers)
        except ClientDisconnected:
            return
        except GatewayError as exc:
            await send_error(send, exc)
            return
        session_id = headers.get(_SESSION_HEADER, b"").decode("latin-1")
        if session_id:
            known_owner = self.owners.get(session_id)
            if known_owner is not None and known_owner != owner:
                await send_bytes(send, 404, _SESSION_NOT_FOUND, JSON_HEADERS)
                return

        async def send_recording_session(message: Message) -> None:
            if message["type"] == "http.response.start" and not session_id:
                for name, value in message.get("headers", []):
                    if name.lower() == _SESSION_HEADER:
                        self.owners[value.decode("latin-1")] = owner
            await send(message)

        token = CURRENT_REQUEST.set(request)
        try:
            receive = BufferedReceive(receive)  # tools/call, tools/list, ping on a live session: see fast_path.py
            if await self.fast_path.handle(request, scope, receive, send):
                return
            await self.server.sessions_manager.handle_request(scope, receive, send_recording_session)
        finally:
            CURRENT_REQUEST.reset(token)
            if scope.get("method") == "DELETE" and session_id:
                self.owners.pop(session_id, None)
                self.server.forget(session_id)
