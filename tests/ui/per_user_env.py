"""A gateway with per-user OAuth for the browser tests: one ``notes`` upstream behind its own OAuth
server (demo users alice and bob), two virtual keys, a loopback "MCP client" that receives the
authorization code, and plain-HTTP helpers (admin sign-in, PKCE, code exchange, MCP tool calls).

The MCP client's part runs with httpx and the MCP SDK; the person's part runs in the browser.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import httpx2
import mcp.types as types
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import Executable
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from heimdall.oauth.upstream.pkce import s256_challenge
from tests.per_user.conftest import add_per_user_client, login_upstream
from tests.support.gateway import RunningGateway
from tests.support.oauth_mcp_upstream import start_oauth_mcp_upstream
from tests.support.run_async import run_async
from tests.support.servers import serve_in_thread
from tests.ui.store_access import run_sql_at

VK_ALICE = "sk-bf-ui-alice-0000000000000000001"
VK_BOB = "sk-bf-ui-bob-00000000000000000002"
VK_NAMES = {"alice": "alice-key", "bob": "bob-key"}
VK_VALUES = {"alice": VK_ALICE, "bob": VK_BOB}
SERVICE = "notes"
CONFIG: dict[str, Any] = {
    # Handoff links and attempts are looked at right after use: no sweep in between.
    "per_user_oauth": {"sweep_interval": 86_400},
    "governance": {
        "virtual_keys": [
            {"id": "vk-alice", "name": VK_NAMES["alice"], "value": VK_ALICE},
            {"id": "vk-bob", "name": VK_NAMES["bob"], "value": VK_BOB},
        ]
    },
}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class LoopbackClient:
    """Where the MCP client listens for the authorization response (RFC 8252 loopback redirect)."""

    url: str
    received: list[dict[str, str]] = field(default_factory=list)

    @property
    def redirect_uri(self) -> str:
        return f"{self.url}/callback"


@dataclass
class PerUserEnv:
    gateway: RunningGateway
    upstream_url: str
    mcp_client_id: str
    loopback: LoopbackClient


def _loopback_app(loopback: LoopbackClient) -> Starlette:
    async def callback(request: Request) -> HTMLResponse:
        loopback.received.append(dict(request.query_params))
        return HTMLResponse("<!doctype html><title>Signed in</title><h1>Signed in. You can close this tab.</h1>")

    return Starlette(routes=[Route("/callback", callback)])


@contextmanager
def per_user_env(gateway_factory: Callable[..., RunningGateway]) -> Iterator[PerUserEnv]:
    """The gateway, the ``notes`` upstream (verified by the admin's test login) and the loopback client."""
    upstream = start_oauth_mcp_upstream()
    loopback = LoopbackClient(url="")
    try:
        with serve_in_thread(_loopback_app(loopback)) as server:
            loopback.url = server.url
            gateway = gateway_factory(CONFIG)
            client_id = add_per_user_client(gateway, SERVICE, upstream, allow_on_all_virtual_keys=True)
            yield PerUserEnv(gateway=gateway, upstream_url=upstream.url, mcp_client_id=client_id, loopback=loopback)
    finally:
        upstream.stop()


# --- the MCP client's side of OAuth (RFC 7591 registration, PKCE, code exchange) ---------------------------------


@dataclass(frozen=True)
class Authorization:
    client_id: str
    verifier: str
    state: str
    url: str


def start_authorization(env: PerUserEnv, client_name: str = "Notes desktop") -> Authorization:
    """Register a public client for the loopback redirect and build its PKCE authorization URL."""
    base = env.gateway.url
    with httpx.Client(base_url=base, trust_env=False, timeout=15) as http:
        registered = http.post(
            "/api/oauth/per-user/register",
            json={"client_name": client_name, "redirect_uris": [env.loopback.redirect_uri]},
        )
    assert registered.status_code == 201, registered.text
    client_id: str = registered.json()["client_id"]
    verifier, state = secrets.token_urlsafe(48), secrets.token_urlsafe(12)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": env.loopback.redirect_uri,
        "code_challenge": s256_challenge(verifier),
        "code_challenge_method": "S256",
        "state": state,
        "scope": "mcp:read mcp:write",
        "resource": f"{base}/mcp",
    }
    url = f"{base}/api/oauth/per-user/authorize?{urlencode(params)}"
    return Authorization(client_id=client_id, verifier=verifier, state=state, url=url)


def exchange_code(env: PerUserEnv, authorization: Authorization, redirect_url: str) -> str:
    """Check the authorization response (state, RFC 9207 iss) and trade its code for an access token."""
    params = {name: values[0] for name, values in parse_qs(urlsplit(redirect_url).query).items()}
    assert params["state"] == authorization.state
    assert params["iss"] == env.gateway.url
    form = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "code_verifier": authorization.verifier,
        "client_id": authorization.client_id,
        "redirect_uri": env.loopback.redirect_uri,
    }
    with httpx.Client(base_url=env.gateway.url, trust_env=False, timeout=15) as http:
        answer = http.post("/api/oauth/per-user/token", data=form)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


# --- MCP calls with a bearer token (the SDK client, on its own event loop in a worker thread) ---------------------


@dataclass(frozen=True)
class ToolResult:
    is_error: bool
    text: str
    structured: Any


async def _call(url: str, token: str, tool: str, arguments: dict[str, Any]) -> ToolResult:
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool(tool, arguments)
    text = "".join(block.text for block in result.content if isinstance(block, types.TextContent))
    return ToolResult(is_error=bool(result.is_error), text=text, structured=result.structured_content)


def call_tool(env: PerUserEnv, token: str, tool: str, **arguments: Any) -> ToolResult:
    """``tools/call`` on the gateway's ``/mcp`` as the MCP client holding ``token``."""
    return run_async(_call(env.gateway.url, token, tool, arguments))


def run_sql(env: PerUserEnv, statement: Executable) -> list[tuple[Any, ...]]:
    """Run one statement on the gateway's database, from outside the gateway; rows for a SELECT."""
    return run_sql_at(env.gateway.app_dir, statement)


# --- plain HTTP as a browser: the admin's session and the person's connection ------------------------------------


@contextmanager
def admin_browser(gateway: RunningGateway) -> Iterator[tuple[httpx.Client, str]]:
    """An httpx client signed in to the web UI, and the session's CSRF token."""
    with httpx.Client(base_url=gateway.url, follow_redirects=False, trust_env=False, timeout=30) as client:
        form = CSRF.search(client.get("/sign-in").text)
        assert form is not None
        signed = client.post("/sign-in", data={"csrf_token": form.group(1), "admin_token": gateway.admin_token})
        assert signed.status_code == 303, signed.text
        page = CSRF.search(client.get("/connected-services").text)
        assert page is not None
        yield client, page.group(1)


def connect_headlessly(env: PerUserEnv, person: str) -> None:
    """``person`` signs in to /oauth/connections with their virtual key and connects ``notes`` upstream."""
    with httpx.Client(base_url=env.gateway.url, trust_env=False, timeout=30) as http:
        first = CSRF.search(http.get("/oauth/connections").text)
        assert first is not None
        signed = http.post("/oauth/connections/sign-in", data={"vk": VK_VALUES[person], "csrf_token": first.group(1)})
        assert signed.status_code == 303, signed.text
        listed = CSRF.search(http.get(signed.headers["location"]).text)
        assert listed is not None
        form = {"csrf_token": listed.group(1), "mcp_client_id": env.mcp_client_id}
        link = http.post("/oauth/connections/connect", data=form)
        assert link.status_code == 303, link.text
        handoff = link.headers["location"]
        token = CSRF.search(http.get(handoff).text)
        assert token is not None
        go = http.post(handoff, data={"csrf_token": token.group(1)})
        assert go.status_code == 302, go.text
        landed = http.get(login_upstream(http, go.headers["location"], person))
        assert landed.status_code == 200, landed.text


def grants_of(env: PerUserEnv) -> list[dict[str, Any]]:
    """Every per-user grant, from the management API."""
    with env.gateway.admin() as api:
        answer = api.get("/api/oauth/per-user/grants")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["grants"]
    return found
