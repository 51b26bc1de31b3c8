"""The demo's notes service (``heimdall.demo.notes``) as a test upstream, with failure knobs and request counters.

One uvicorn server on 127.0.0.1 runs a ``NotesService``: an MCP server (``whoami``, ``add_note``,
``list_notes``, notes kept per user) behind its own OAuth 2.1 authorization server, with a
``/login`` page for the demo users alice and bob (``&user=alice`` approves headlessly, ``&deny=1``
denies). On top of the service's own switches (``NotesKnobs``), tests can make refreshes fail or
lag and token responses come back form-encoded (``UpstreamKnobs``), and read every OAuth request
as the upstream received it (``UpstreamCounters``).

``start_oauth_mcp_upstream(**knobs)`` returns an ``OAuthMCPUpstream`` with ``.url``, ``.mcp_url``,
``.issuer``, ``.knobs`` (changeable while it runs), ``.counters``, ``.notes``, ``.provider`` and
``.stop()``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from mcp.shared.auth import OAuthClientInformationFull
from pydantic import AnyUrl
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heimdall.asgi import header_map, read_body
from heimdall.demo.notes import MAX_BODY_BYTES, NotesService
from heimdall.demo.notes_auth import SCOPES, NotesKnobs
from tests.support.servers import ServerThread

__all__ = ["SCOPES", "OAuthMCPUpstream", "UpstreamCounters", "UpstreamKnobs", "start_oauth_mcp_upstream"]

OAUTH_PATHS = ("/authorize", "/token", "/register", "/revoke")
RefreshFailure = Literal["invalid_grant", "invalid_client", "invalid_request", "transient"]


@dataclass
class UpstreamKnobs(NotesKnobs):
    """The service's switches plus failure injection; tests may change them while the server runs."""

    #: Make refresh requests fail: invalid_grant (400), invalid_client (401), invalid_request (400), transient (503).
    refresh_failure: RefreshFailure | None = None
    #: How many refresh requests fail before they succeed again; None = all of them.
    refresh_failures_left: int | None = None
    #: Seconds each refresh request waits before it is answered (to make concurrent refreshes overlap).
    refresh_delay: float = 0.0
    #: Answer token requests form-encoded instead of JSON.
    form_encoded_tokens: bool = False


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


class Recorder:
    """ASGI middleware: records OAuth requests and /mcp 401s, and applies the failure and encoding knobs."""

    def __init__(self, app: ASGIApp, knobs: UpstreamKnobs, counters: UpstreamCounters) -> None:
        self.app = app
        self.knobs = knobs
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path == "/mcp":
            await self.app(scope, receive, self._counting_401s(send))
            return
        if scope["type"] != "http" or path not in OAUTH_PATHS:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, header_map(scope), MAX_BODY_BYTES)
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

    def _counting_401s(self, send: Send) -> Send:
        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.counters.unauthorized_mcp_requests += 1
            await send(message)

        return counting

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


class OAuthMCPUpstream(NotesService):
    """The running upstream: the notes service under uvicorn, with the test knobs and counters."""

    knobs: UpstreamKnobs

    def __init__(self, knobs: UpstreamKnobs) -> None:
        super().__init__(knobs)
        self.counters = UpstreamCounters()
        recorder = Middleware(Recorder, knobs=knobs, counters=self.counters)
        self._server = ServerThread(self.app([recorder]), lifespan="on")

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
        self.bind(self._server.url)
        return self

    def stop(self) -> None:
        self._server.stop()


def start_oauth_mcp_upstream(**knobs: Any) -> OAuthMCPUpstream:
    """Start an upstream with the given ``UpstreamKnobs`` fields; call ``.stop()`` when done."""
    return OAuthMCPUpstream(UpstreamKnobs(**knobs)).start()
