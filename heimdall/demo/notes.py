"""The demo's "notes" service: a per-user MCP server behind its own OAuth 2.1 authorization server.

One ASGI app serves both roles, built from the MCP SDK's pieces:

- ``/mcp``: an ``MCPServer`` over streamable HTTP with the tools ``whoami``, ``add_note`` and
  ``list_notes``. Notes are kept per user (the token's subject), so one user never sees another's.
  Without a valid token for this resource it answers 401 with ``WWW-Authenticate: Bearer
  resource_metadata="…"`` (RFC 6750 §3, RFC 9728 §5.1), and 403 ``insufficient_scope`` to a
  ``tools/call`` whose ``tool_scopes`` scope the token lacks.
- ``/.well-known/oauth-protected-resource/mcp`` (RFC 9728) and ``/.well-known/oauth-authorization-server``
  (RFC 8414), with the SDK's ``/authorize``, ``/token``, ``/register`` (RFC 7591) and ``/revoke`` (RFC 7009).
- ``/login``: where ``/authorize`` sends the browser. It offers the demo users (alice, bob);
  ``&user=alice`` approves headlessly, ``&deny=1`` answers ``access_denied``.

The service learns its own URL only once it listens: call ``bind(url)`` before the first request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from mcp.server.auth.middleware.auth_context import AuthContextMiddleware, get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.routes import build_metadata, create_auth_routes
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heimdall.asgi import ClientDisconnected, header_map, read_body, send_error
from heimdall.demo.login_page import login_page, unknown_request_page
from heimdall.demo.notes_auth import SCOPES, NotesAuthServer, NotesKnobs
from heimdall.errors import GatewayError

__all__ = ["NotesService"]

MAX_BODY_BYTES = 1024 * 1024


class BearerGuard:
    """The resource server side of /mcp: a valid token for this resource, else a 401 challenge (RFC 6750 §3)."""

    def __init__(self, app: ASGIApp, service: NotesService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = self.service
        auth = header_map(scope).get(b"authorization", b"").decode("latin-1")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        access = await service.provider.load_access_token(token) if token else None
        if access is None or (access.resource or "").rstrip("/") != service.mcp_url:
            challenge = (
                'Bearer error="invalid_token", error_description="Authentication required", '
                f'resource_metadata="{service.resource_metadata_url}"'
            )
            if service.knobs.challenge_scope:
                challenge += f', scope="{service.knobs.challenge_scope}"'
            response = JSONResponse(
                {"error": "invalid_token", "error_description": "Authentication required"},
                status_code=401,
                headers={"WWW-Authenticate": challenge},
            )
            await response(scope, receive, send)
            return
        scope["user"] = AuthenticatedUser(access)
        if service.knobs.tool_scopes and scope.get("method") == "POST":
            replay = await self._check_tool_scope(scope, receive, send, access)
            if replay is None:
                return
            receive = replay
        await self.app(scope, receive, send)

    async def _check_tool_scope(
        self, scope: Scope, receive: Receive, send: Send, access: AccessToken
    ) -> Receive | None:
        """Answer 403 ``insufficient_scope`` to a ``tools/call`` the token lacks the scope for (None),
        else hand back a ``receive`` that replays the body already read."""
        try:
            body = await read_body(receive, header_map(scope), MAX_BODY_BYTES)
        except ClientDisconnected:
            return None
        except GatewayError as exc:
            await send_error(send, exc)
            return None
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = {}
        call = isinstance(request, dict) and request.get("method") == "tools/call"
        name = str((request.get("params") or {}).get("name", "")) if call else ""
        needed = self.service.knobs.tool_scopes.get(name)
        if needed is not None and needed not in access.scopes:
            challenge = (
                f'Bearer error="insufficient_scope", scope="{needed}", '
                f'resource_metadata="{self.service.resource_metadata_url}", '
                'error_description="this tool needs more access"'
            )
            response = JSONResponse(
                {"error": "insufficient_scope", "error_description": "this tool needs more access"},
                status_code=403,
                headers={"WWW-Authenticate": challenge},
            )
            await response(scope, receive, send)
            return None

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # e.g. http.disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay


def _build_mcp_server(service: NotesService) -> MCPServer:
    server = MCPServer("notes", instructions="Your notes: list them, or add one.")

    def user() -> str:
        token = get_access_token()
        assert token is not None and token.subject is not None
        return token.subject

    @server.tool()
    def whoami() -> str:
        """The user this server's token belongs to."""
        return user()

    @server.tool()
    def add_note(text: str) -> str:
        """Add a note for the calling user."""
        service.notes.setdefault(user(), []).append(text)
        return f"saved note {len(service.notes[user()])}"

    @server.tool()
    def list_notes() -> list[str]:
        """The calling user's notes (never another user's)."""
        return list(service.notes.get(user(), []))

    return server


class NotesService:
    """The notes MCP server and its authorization server; ``app()`` is the ASGI app serving both."""

    def __init__(self, knobs: NotesKnobs | None = None, notes: Mapping[str, Sequence[str]] | None = None) -> None:
        self.knobs = knobs or NotesKnobs()
        self.provider = NotesAuthServer(self.knobs)
        #: user → their notes, oldest first
        self.notes: dict[str, list[str]] = {user: list(texts) for user, texts in (notes or {}).items()}
        self.url = ""
        self.mcp = _build_mcp_server(self)
        self.mcp.streamable_http_app(host="127.0.0.1")  # creates the session manager mounted in app()

    def bind(self, url: str) -> None:
        """Record the base URL the service listens on (no trailing slash)."""
        self.url = url.rstrip("/")
        self.provider.issuer = self.url

    @property
    def issuer(self) -> str:
        return self.url

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"

    @property
    def resource_metadata_url(self) -> str:
        return f"{self.url}/.well-known/oauth-protected-resource/mcp"

    def app(self, middleware: Sequence[Middleware] = ()) -> Starlette:
        """The ASGI app (its lifespan runs the MCP session manager, once); ``middleware`` wraps every route."""
        routes = [
            route
            for route in create_auth_routes(
                self.provider,
                AnyHttpUrl("http://127.0.0.1"),  # its metadata route is replaced below; the others ignore it
                client_registration_options=ClientRegistrationOptions(
                    enabled=True, valid_scopes=SCOPES, default_scopes=SCOPES
                ),
                revocation_options=RevocationOptions(enabled=True),
            )
            if route.path != "/.well-known/oauth-authorization-server"
        ]
        routes += [
            Route("/.well-known/oauth-authorization-server", self._as_metadata, methods=["GET"]),
            Route("/.well-known/oauth-protected-resource/mcp", self._resource_metadata, methods=["GET"]),
            Route("/login", self._login, methods=["GET", "POST"]),
            Route(
                "/mcp",
                BearerGuard(AuthContextMiddleware(StreamableHTTPASGIApp(self.mcp.session_manager)), self),
                methods=["GET", "POST", "DELETE"],
            ),
        ]

        @asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            async with self.mcp.session_manager.run():
                yield

        return Starlette(routes=routes, middleware=list(middleware), lifespan=lifespan)

    async def _as_metadata(self, request: Request) -> Response:
        metadata = build_metadata(
            AnyHttpUrl(self.issuer),
            None,
            ClientRegistrationOptions(enabled=True, valid_scopes=SCOPES),
            RevocationOptions(enabled=True),
        ).model_dump(mode="json", exclude_none=True)
        metadata["issuer"] = self.issuer
        metadata["authorization_endpoint"] = f"{self.issuer}/authorize"
        if self.knobs.authorize_query:
            metadata["authorization_endpoint"] += "?" + self.knobs.authorize_query
        methods = ["none", "client_secret_basic", "client_secret_post"]
        if self.knobs.require_client_secret_basic:
            methods = ["client_secret_basic"]
        metadata["token_endpoint_auth_methods_supported"] = self.knobs.token_auth_methods or methods
        metadata["authorization_response_iss_parameter_supported"] = self.knobs.send_iss
        return JSONResponse(metadata)

    async def _resource_metadata(self, request: Request) -> Response:
        return JSONResponse(
            {
                "resource": self.mcp_url,
                "authorization_servers": [self.issuer],
                "scopes_supported": SCOPES,
                "bearer_methods_supported": ["header"],
            }
        )

    async def _login(self, request: Request) -> Response:
        values = dict(request.query_params)
        if request.method == "POST":
            values.update({key: str(value) for key, value in (await request.form()).items()})
        key = values.get("req", "")
        if values.get("deny"):
            target = self.provider.deny(key)
        elif values.get("user"):
            target = self.provider.approve(key, values["user"])
        else:
            pending = self.provider.pending.get(key)
            client = self.provider.clients.get(pending[0]) if pending else None
            if pending is None or client is None:
                return HTMLResponse(unknown_request_page(), status_code=400)
            scopes = pending[1].scopes or (client.scope or "").split()
            return HTMLResponse(login_page(key, client.client_name or "An application", scopes))
        if target is None:
            return HTMLResponse(unknown_request_page(), status_code=400)
        return RedirectResponse(target, status_code=302)
