"""A real upstream MCP server behind its own OAuth 2.1 authorization server, for tests and the demo.

One uvicorn server on 127.0.0.1 serves both roles, built from the MCP SDK's pieces:

- ``/mcp``: an ``MCPServer`` over streamable HTTP. Without a valid token for this resource it
  answers 401 with ``WWW-Authenticate: Bearer resource_metadata="…"`` (and ``scope="…"`` when the
  ``challenge_scope`` knob is set), and 403 ``insufficient_scope`` to a ``tools/call`` whose
  ``tool_scopes`` scope the token lacks. Tools: ``whoami``, ``add_note``, ``list_notes`` (notes are
  kept per user, so tests can check that one user never sees another's).
- ``/.well-known/oauth-protected-resource/mcp`` (RFC 9728) and ``/.well-known/oauth-authorization-server``
  (RFC 8414), with the SDK's ``/authorize``, ``/token``, ``/register`` (RFC 7591) and ``/revoke`` (RFC 7009).
- ``/login``: where ``/authorize`` sends the browser. ``&user=alice`` approves headlessly; without
  it a small form offers the two demo users (alice, bob); ``&deny=1`` answers ``access_denied``.

``start_oauth_mcp_upstream(**knobs)`` returns an ``OAuthMCPUpstream`` with ``.url``, ``.mcp_url``,
``.issuer``, ``.knobs`` (changeable while it runs), ``.counters`` (every authorize, token,
registration and revocation request as received) and ``.stop()``.
"""

from __future__ import annotations

import asyncio
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from mcp.server.auth.middleware.auth_context import AuthContextMiddleware, get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.server.auth.routes import build_metadata, create_auth_routes
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyHttpUrl, AnyUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from tests.support.servers import ServerThread

SCOPES = ["notes:read", "notes:write"]
DEMO_USERS = ("alice", "bob")
RefreshFailure = Literal["invalid_grant", "invalid_client", "invalid_request", "transient"]


@dataclass
class UpstreamKnobs:
    """Behaviour switches; tests may change them while the server runs."""

    #: Access token lifetime in seconds.
    access_ttl: int = 3600
    #: Leave ``expires_in`` out of token responses (the token still expires after ``access_ttl``).
    omit_expires_in: bool = False
    #: Issue a new refresh token on every refresh (and invalidate the old one).
    rotate_refresh_tokens: bool = True
    issue_refresh_tokens: bool = True
    #: Make refresh requests fail: invalid_grant (400), invalid_client (401), invalid_request (400), transient (503).
    refresh_failure: RefreshFailure | None = None
    #: How many refresh requests fail before they succeed again; None = all of them.
    refresh_failures_left: int | None = None
    #: Seconds each refresh request waits before it is answered (to make concurrent refreshes overlap).
    refresh_delay: float = 0.0
    #: Advertise only client_secret_basic in the metadata (DCR clients then get a secret and must use Basic).
    require_client_secret_basic: bool = False
    #: Advertised token_endpoint_auth_methods_supported (overrides the default and the switch above).
    token_auth_methods: list[str] | None = None
    #: Query string already present in the advertised authorization_endpoint (e.g. "tenant=acme").
    authorize_query: str | None = None
    #: ``scope`` parameter of the 401 challenge on /mcp.
    challenge_scope: str | None = None
    #: Answer token requests form-encoded instead of JSON.
    form_encoded_tokens: bool = False
    #: Add RFC 9207 ``iss`` to the authorization response.
    send_iss: bool = True
    #: Tool name → the scope its ``tools/call`` needs; a token without it gets 403 ``insufficient_scope``
    #: with ``scope="<that scope>"`` (MCP step-up authorization, RFC 6750 §3.1).
    tool_scopes: dict[str, str] = field(default_factory=dict)
    #: Grant exactly these space-separated scopes at login, whatever was asked for.
    grant_scope: str | None = None


@dataclass
class UpstreamCounters:
    """Requests as the upstream received them (form fields, query parameters, JSON bodies)."""

    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    revocations: list[dict[str, str]] = field(default_factory=list)
    unauthorized_mcp_requests: int = 0

    def grants(self, grant_type: str) -> list[dict[str, Any]]:
        return [request for request in self.token_requests if request["form"].get("grant_type") == grant_type]

    @property
    def code_exchanges(self) -> int:
        return len(self.grants("authorization_code"))

    @property
    def refreshes(self) -> int:
        return len(self.grants("refresh_token"))


class InMemoryAuthServer(OAuthAuthorizationServerProvider[AuthorizationCode, RefreshToken, AccessToken]):
    """``OAuthAuthorizationServerProvider`` keeping clients, codes and tokens in dicts (one grant per login)."""

    def __init__(self, knobs: UpstreamKnobs) -> None:
        self.knobs = knobs
        self.issuer = ""
        self.lock = threading.Lock()
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.pending: dict[str, tuple[str, AuthorizationParams]] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        #: token → grant id, so that revoking a refresh token revokes the whole grant (RFC 7009 §2.1)
        self.grant_of: dict[str, str] = {}

    # -- clients --

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        assert client_info.client_id is not None
        self.clients[client_info.client_id] = client_info

    # -- authorization --

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        key = secrets.token_urlsafe(16)
        assert client.client_id is not None
        self.pending[key] = (client.client_id, params)
        return f"{self.issuer}/login?req={key}"

    def approve(self, key: str, user: str) -> str | None:
        """Mint a code for ``user``; the redirect back to the client, or None for an unknown request."""
        pending = self.pending.pop(key, None)
        if pending is None:
            return None
        client_id, params = pending
        client = self.clients[client_id]
        code = AuthorizationCode(
            code=secrets.token_urlsafe(24),
            scopes=(
                self.knobs.grant_scope.split()
                if self.knobs.grant_scope is not None
                else params.scopes or (client.scope or "").split()
            ),
            expires_at=time.time() + 300,
            client_id=client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
            subject=user,
        )
        self.codes[code.code] = code
        iss = self.issuer if self.knobs.send_iss else None
        return construct_redirect_uri(str(params.redirect_uri), code=code.code, state=params.state, iss=iss)

    def deny(self, key: str) -> str | None:
        pending = self.pending.pop(key, None)
        if pending is None:
            return None
        _, params = pending
        return construct_redirect_uri(
            str(params.redirect_uri), error="access_denied", error_description="the user said no", state=params.state
        )

    async def load_authorization_code(self, client: OAuthClientInformationFull, code: str) -> AuthorizationCode | None:
        return self.codes.get(code)

    def _mint(
        self, client_id: str, scopes: list[str], resource: str | None, subject: str | None, grant: str
    ) -> OAuthToken:
        knobs = self.knobs
        access = AccessToken(
            token=f"at-{subject}-{secrets.token_urlsafe(24)}",
            client_id=client_id,
            scopes=scopes,
            expires_at=int(time.time()) + knobs.access_ttl,
            resource=resource,
            subject=subject,
        )
        with self.lock:
            self.access_tokens[access.token] = access
            self.grant_of[access.token] = grant
        refresh_value = None
        if knobs.issue_refresh_tokens:
            refresh = RefreshToken(
                token=f"rt-{secrets.token_urlsafe(24)}",
                client_id=client_id,
                scopes=scopes,
                resource=resource,
                subject=subject,
            )
            with self.lock:
                self.refresh_tokens[refresh.token] = refresh
                self.grant_of[refresh.token] = grant
            refresh_value = refresh.token
        return OAuthToken(
            access_token=access.token,
            expires_in=None if knobs.omit_expires_in else knobs.access_ttl,
            scope=" ".join(scopes),
            refresh_token=refresh_value,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        if self.codes.pop(authorization_code.code, None) is None:
            raise TokenError("invalid_grant", "authorization code already used")
        assert client.client_id is not None
        grant = secrets.token_hex(8)
        return self._mint(
            client.client_id, authorization_code.scopes, authorization_code.resource, authorization_code.subject, grant
        )

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> RefreshToken | None:
        return self.refresh_tokens.get(refresh_token)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        grant = self.grant_of.get(refresh_token.token, secrets.token_hex(8))
        rotate = self.knobs.rotate_refresh_tokens
        if rotate:
            with self.lock:
                self.refresh_tokens.pop(refresh_token.token, None)
        assert client.client_id is not None
        issued = self._mint(client.client_id, scopes, refresh_token.resource, refresh_token.subject, grant)
        if not rotate:
            with self.lock:
                if issued.refresh_token is not None:
                    self.refresh_tokens.pop(issued.refresh_token, None)
            issued = issued.model_copy(update={"refresh_token": None})
        return issued

    async def load_access_token(self, token: str) -> AccessToken | None:
        access = self.access_tokens.get(token)
        if access is None or (access.expires_at is not None and access.expires_at < time.time()):
            return None
        return access

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        with self.lock:
            grant = self.grant_of.get(token.token)
            doomed = [value for value, owner in self.grant_of.items() if owner == grant] if grant else [token.token]
            for value in doomed:
                self.access_tokens.pop(value, None)
                self.refresh_tokens.pop(value, None)

    # -- test helpers (called from the test thread) --

    def invalidate_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    def live_tokens(self) -> set[str]:
        with self.lock:
            return set(self.access_tokens) | set(self.refresh_tokens)


class Recorder:
    """ASGI middleware: records OAuth requests and applies the failure and encoding knobs."""

    def __init__(self, app: Any, knobs: UpstreamKnobs, counters: UpstreamCounters) -> None:
        self.app = app
        self.knobs = knobs
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path not in ("/authorize", "/token", "/register", "/revoke"):
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        if path == "/authorize":
            self.counters.authorize_requests.append(dict(parse_qsl(scope.get("query_string", b"").decode())))
        elif path == "/register":
            self.counters.registrations.append(json.loads(body or b"{}"))
        elif path == "/revoke":
            self.counters.revocations.append(dict(parse_qsl(body.decode())))
        else:
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
            self.counters.token_requests.append({"form": form, "authorization": headers.get("authorization")})
            if form.get("grant_type") == "refresh_token":
                if self.knobs.refresh_delay:
                    await asyncio.sleep(self.knobs.refresh_delay)
                failure = self._refresh_failure()
                if failure is not None:
                    await failure(scope, receive, send)
                    return

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        if path == "/token" and self.knobs.form_encoded_tokens:
            await self.app(scope, replay, _FormEncodingSend(send))
        else:
            await self.app(scope, replay, send)

    def _refresh_failure(self) -> Response | None:
        knobs = self.knobs
        if knobs.refresh_failure is None:
            return None
        if knobs.refresh_failures_left is not None:
            if knobs.refresh_failures_left <= 0:
                return None
            knobs.refresh_failures_left -= 1
        no_store = {"Cache-Control": "no-store"}
        if knobs.refresh_failure == "transient":
            return JSONResponse({"error": "temporarily_unavailable"}, status_code=503, headers=no_store)
        if knobs.refresh_failure == "invalid_client":
            return JSONResponse({"error": "invalid_client"}, status_code=401, headers=no_store)
        description = "refresh token revoked" if knobs.refresh_failure == "invalid_grant" else "bad request"
        return JSONResponse(
            {"error": knobs.refresh_failure, "error_description": description}, status_code=400, headers=no_store
        )


class _FormEncodingSend:
    """Re-encodes a JSON token response as application/x-www-form-urlencoded."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.body = b""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        self.body += message.get("body", b"")
        if message.get("more_body", False):
            return
        assert self.start is not None
        data = json.loads(self.body or b"{}")
        encoded = urlencode({key: str(value) for key, value in data.items()}).encode()
        headers = [(k, v) for k, v in self.start["headers"] if k.lower() not in (b"content-type", b"content-length")]
        headers += [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(encoded)).encode()),
        ]
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": encoded})


class BearerGuard:
    """The resource server side of /mcp: a valid token for this resource, else a 401 challenge (RFC 6750 §3)."""

    def __init__(self, app: Any, upstream: OAuthMCPUpstream) -> None:
        self.app = app
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        upstream = self.upstream
        auth = ""
        for name, value in scope["headers"]:
            if name.lower() == b"authorization":
                auth = value.decode("latin-1")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        access = await upstream.provider.load_access_token(token) if token else None
        if access is None or (access.resource or "").rstrip("/") != upstream.mcp_url:
            upstream.counters.unauthorized_mcp_requests += 1
            challenge = (
                'Bearer error="invalid_token", error_description="Authentication required", '
                f'resource_metadata="{upstream.url}/.well-known/oauth-protected-resource/mcp"'
            )
            if upstream.knobs.challenge_scope:
                challenge += f', scope="{upstream.knobs.challenge_scope}"'
            response = JSONResponse(
                {"error": "invalid_token", "error_description": "Authentication required"},
                status_code=401,
                headers={"WWW-Authenticate": challenge},
            )
            await response(scope, receive, send)
            return
        scope["user"] = AuthenticatedUser(access)
        if upstream.knobs.tool_scopes and scope.get("method") == "POST":
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
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = {}
        call = isinstance(request, dict) and request.get("method") == "tools/call"
        name = str((request.get("params") or {}).get("name", "")) if call else ""
        needed = self.upstream.knobs.tool_scopes.get(name)
        if needed is not None and needed not in access.scopes:
            challenge = (
                f'Bearer error="insufficient_scope", scope="{needed}", '
                f'resource_metadata="{self.upstream.url}/.well-known/oauth-protected-resource/mcp", '
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


def _build_mcp_server(upstream: OAuthMCPUpstream) -> MCPServer:
    server = MCPServer("notes-upstream", instructions="Per-user notes, behind OAuth.")

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
        upstream.notes.setdefault(user(), []).append(text)
        return f"saved note {len(upstream.notes[user()])}"

    @server.tool()
    def list_notes() -> list[str]:
        """The calling user's notes (never another user's)."""
        return list(upstream.notes.get(user(), []))

    return server


class OAuthMCPUpstream:
    """The running upstream: an MCP server and its authorization server on one port."""

    def __init__(self, knobs: UpstreamKnobs) -> None:
        self.knobs = knobs
        self.counters = UpstreamCounters()
        self.provider = InMemoryAuthServer(knobs)
        self.notes: dict[str, list[str]] = {}
        self.url = ""
        self.mcp = _build_mcp_server(self)
        self.mcp.streamable_http_app(host="127.0.0.1")  # creates the session manager we mount below
        self._server = ServerThread(self._app(), lifespan="on")

    @property
    def issuer(self) -> str:
        return self.url

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"

    def _app(self) -> Starlette:
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
        app = Starlette(routes=routes, lifespan=lambda _app: self.mcp.session_manager.run())
        app.add_middleware(Recorder, knobs=self.knobs, counters=self.counters)
        return app

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
            if key not in self.provider.pending:
                return HTMLResponse("<h1>Unknown or expired login request</h1>", status_code=400)
            buttons = "".join(
                f"<button type='submit' name='user' value='{name}'>Sign in as {name}</button> " for name in DEMO_USERS
            )
            page = (
                "<!doctype html><title>Notes upstream login</title><h1>Notes upstream</h1>"
                f"<form method='post' action='/login'><input type='hidden' name='req' value='{html.escape(key)}'>"
                f"{buttons}<button type='submit' name='deny' value='1'>Deny</button></form>"
            )
            return HTMLResponse(page)
        if target is None:
            return HTMLResponse("<h1>Unknown or expired login request</h1>", status_code=400)
        return RedirectResponse(target, status_code=302)

    # -- helpers for tests --

    def register_client(self, redirect_uri: str, auth_method: str = "client_secret_post") -> tuple[str, str | None]:
        """A pre-registered client (as an admin would create at the provider): ``(client_id, secret)``."""
        client_id = f"pre-{secrets.token_hex(6)}"
        secret = None if auth_method == "none" else secrets.token_hex(16)
        self.provider.clients[client_id] = OAuthClientInformationFull(
            client_id=client_id,
            client_secret=secret,
            redirect_uris=[AnyUrl(redirect_uri)],
            token_endpoint_auth_method=auth_method,
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            scope=" ".join(SCOPES),
        )
        return client_id, secret

    def start(self) -> OAuthMCPUpstream:
        self._server.start(timeout=15)
        self.url = self._server.url
        self.provider.issuer = self.url
        return self

    def stop(self) -> None:
        self._server.stop()


def start_oauth_mcp_upstream(**knobs: Any) -> OAuthMCPUpstream:
    """Start an upstream with the given ``UpstreamKnobs`` fields; call ``.stop()`` when done."""
    return OAuthMCPUpstream(UpstreamKnobs(**knobs)).start()
