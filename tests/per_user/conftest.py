"""A running Heimdall with two OAuth-protected upstreams set up as ``per_user_oauth`` clients, and a browser.

Each upstream runs its own authorization server and hands out distinct per-user tokens; the admin
verifies each client the way the UI does (``POST /api/mcp/client`` → test login as ``admin`` →
``complete-oauth``). ``notes_a`` is granted to the virtual keys by their ``mcp_configs``;
``notes_b`` has ``allow_on_all_virtual_keys``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import httpx2
import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import delete, select, update

from heimdall.store.per_user_models import OAuthHandoffRow, OAuthUserAttemptRow, OAuthUserTokenRow
from tests.conftest import POSTGRES_DSN, _pg_admin
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.oauth_mcp_upstream import OAuthMCPUpstream, UpstreamKnobs, start_oauth_mcp_upstream
from tests.support.run_async import run_sql  # noqa: F401  (re-exported for the per-user tests)

VK_ALICE = "sk-bf-alice-key-000000000000000001"
VK_BOB = "sk-bf-bob-key-0000000000000000002"
VK_APP = "sk-bf-app-key-0000000000000000003"
VK_NONE = "sk-bf-no-mcp-key-00000000000000004"
NOTES_A = {"mcp_client_name": "notes_a", "tools_to_execute": ["*"]}
CONFIG: dict[str, Any] = {
    # The tests look at links right after using them: no sweep may run in between.
    "per_user_oauth": {"sweep_interval": 86_400},
    "governance": {
        "virtual_keys": [
            {"id": "vk-alice", "name": "alice-key", "value": VK_ALICE, "mcp_configs": [NOTES_A]},
            {"id": "vk-bob", "name": "bob-key", "value": VK_BOB, "mcp_configs": [NOTES_A]},
            {"id": "vk-app", "name": "app-key", "value": VK_APP, "can_assert_user_ids": True, "mcp_configs": [NOTES_A]},
            {"id": "vk-none", "name": "no-mcp-key", "value": VK_NONE},
        ]
    },
}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Env:
    gateway: RunningGateway
    a: OAuthMCPUpstream
    b: OAuthMCPUpstream
    db_url: str
    client_ids: dict[str, str]

    def upstream(self, name: str) -> OAuthMCPUpstream:
        return self.a if name == "notes_a" else self.b


def login_upstream(http: httpx.Client, authorize_url: str, user: str) -> str:
    """Sign in at the upstream headlessly; returns its redirect back to the gateway's callback (not followed)."""
    first = http.get(authorize_url)
    assert first.status_code == 302, first.text
    second = http.get(first.headers["location"] + f"&user={user}")
    assert second.status_code == 302, second.text
    location: str = second.headers["location"]
    assert urlsplit(location).path == "/api/oauth/callback", location
    return location


def add_per_user_client(gateway: RunningGateway, name: str, upstream: OAuthMCPUpstream, **extra: Any) -> str:
    """Set up an active per_user_oauth client as an admin does; returns its id."""
    body = {
        "name": name,
        "connection_type": "http",
        "connection_string": upstream.mcp_url,
        "auth_type": "per_user_oauth",
        "oauth_config": {},
        "tools_to_execute": ["*"],
        **extra,
    }
    with gateway.admin() as api, httpx.Client(timeout=30, trust_env=False) as browser:
        started = api.post("/api/mcp/client", json=body)
        assert started.status_code == 200, started.text
        pending = started.json()
        landed = browser.get(login_upstream(browser, pending["authorize_url"], "admin"))
        assert landed.status_code == 200, landed.text
        done = api.post(f"/api/mcp/client/{pending['oauth_config_id']}/complete-oauth")
        assert done.status_code == 200, done.text
    client_id: str = done.json()["mcp_client_id"]
    return client_id


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database per test module and backend (SQLite in a temp dir, or a fresh PostgreSQL database)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('per_user_db') / 'heimdall.db'}"
        return
    request.getfixturevalue("postgres_available")
    name = f"heimdall_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_DSN.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def shared_env(shared_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Heimdall and two upstreams for a whole test module (setting them up costs seconds)."""
    a, b = start_oauth_mcp_upstream(), start_oauth_mcp_upstream()
    gateway = None
    try:
        gateway = start_gateway(tmp_path_factory.mktemp("per_user_gateway"), config=CONFIG, db_url=shared_db_url)
        ids = {
            "notes_a": add_per_user_client(gateway, "notes_a", a),
            "notes_b": add_per_user_client(gateway, "notes_b", b, allow_on_all_virtual_keys=True),
        }
        yield Env(gateway=gateway, a=a, b=b, db_url=shared_db_url, client_ids=ids)
    finally:
        if gateway is not None:
            gateway.stop()
        a.stop()
        b.stop()


def _reset_upstream(upstream: OAuthMCPUpstream) -> None:
    defaults = UpstreamKnobs()
    for knob in dataclasses.fields(UpstreamKnobs):
        setattr(upstream.knobs, knob.name, getattr(defaults, knob.name))
    counters = upstream.counters
    counters.authorize_requests.clear()
    counters.token_requests.clear()
    counters.registrations.clear()
    counters.revocations.clear()
    counters.unauthorized_mcp_requests = 0


@pytest.fixture
def env(shared_env: Env) -> Env:
    """The module's gateway with no upstream grants, links or logins, and fresh upstream knobs and counters."""
    for model in (OAuthUserTokenRow, OAuthHandoffRow, OAuthUserAttemptRow):
        run_sql(shared_env.db_url, delete(model))
    _reset_upstream(shared_env.a)
    _reset_upstream(shared_env.b)
    return shared_env


# --- callers ----------------------------------------------------------------------------------


def execute(gateway: RunningGateway, tool: str, *, vk: str | None = None, user: str | None = None) -> httpx.Response:
    """``POST /v1/mcp/tool/execute`` for one tool call with no arguments."""
    headers = {"x-bf-vk": vk} if vk else {}
    if user is not None:
        headers["X-Bf-User-Id"] = user
    call = {"id": "call-1", "type": "function", "function": {"name": tool, "arguments": "{}"}}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=60, trust_env=False) as http:
        return http.post("/v1/mcp/tool/execute", json=call)


def auth_required(response: httpx.Response) -> dict[str, Any]:
    """The ``mcp_auth_required`` object of a lazy-auth answer (after checking its shape)."""
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"]["type"] == "mcp_auth_required", body
    details: dict[str, Any] = body["extra_fields"]["mcp_auth_required"]
    assert details["authorize_url"] in body["error"]["message"]
    return details


def tool_output(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    content: str = response.json()["content"]
    return content


@asynccontextmanager
async def mcp_session(gateway: RunningGateway, **headers: str) -> AsyncIterator[ClientSession]:
    """An MCP client session with the gateway's /mcp endpoint."""
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(f"{gateway.url}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def text_of(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


class Browser:
    """One browser (one cookie jar) that opens connection links and signs in upstream."""

    def __init__(self) -> None:
        self.http = httpx.Client(timeout=30, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def open_link(self, link: str) -> tuple[httpx.Response, str]:
        page = self.http.get(link)
        assert page.status_code == 200, page.text
        match = CSRF.search(page.text)
        assert match is not None, page.text
        return page, match.group(1)

    def continue_to_upstream(self, link: str) -> str:
        """Open the link's page and press Continue; returns the upstream authorize URL."""
        _, csrf = self.open_link(link)
        answer = self.http.post(link, data={"csrf_token": csrf})
        assert answer.status_code == 302, answer.text
        location: str = answer.headers["location"]
        return location

    def sign_in(self, gateway: RunningGateway, vk: str) -> httpx.Response:
        """Sign in to the connections page with a virtual key; returns the page."""
        _, csrf = self.open_link(f"{gateway.url}/oauth/connections")
        answer = self.http.post(f"{gateway.url}/oauth/connections/sign-in", data={"vk": vk, "csrf_token": csrf})
        assert answer.status_code == 303, answer.text
        page = self.http.get(gateway.url + answer.headers["location"])
        assert page.status_code == 200, page.text
        return page

    def connection_link(self, env: Env, vk: str, service: str) -> str:
        """A fresh connection link for ``service`` from the connections page (signed in with ``vk``)."""
        page = self.sign_in(env.gateway, vk)
        match = CSRF.search(page.text)
        assert match is not None
        form = {"csrf_token": match.group(1), "mcp_client_id": env.client_ids[service]}
        answer = self.http.post(f"{env.gateway.url}/oauth/connections/connect", data=form)
        assert answer.status_code == 303, answer.text
        location: str = answer.headers["location"]
        return location

    def connect(self, link: str, user: str) -> httpx.Response:
        """The whole connection: link page, Continue, upstream sign-in as ``user``, the gateway's callback."""
        callback = login_upstream(self.http, self.continue_to_upstream(link), user)
        return self.http.get(callback)


@pytest.fixture
def browser() -> Iterator[Browser]:
    opened = Browser()
    yield opened
    opened.close()


# --- the database, read and changed directly ---------------------------------------------------


def expire_tokens(db_url: str, minutes_ago: int = 5) -> None:
    """Make every stored upstream access token look expired."""
    past = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    run_sql(db_url, update(OAuthUserTokenRow).values(expires_at=past))


def token_rows(db_url: str) -> list[tuple[Any, ...]]:
    """``(mcp_client_id, identity_kind, identity, status, expires_at, access, refresh)`` of every token row."""
    columns = (
        OAuthUserTokenRow.mcp_client_id,
        OAuthUserTokenRow.identity_kind,
        OAuthUserTokenRow.identity,
        OAuthUserTokenRow.status,
        OAuthUserTokenRow.expires_at,
        OAuthUserTokenRow.access_token_encrypted,
        OAuthUserTokenRow.refresh_token_encrypted,
    )
    return run_sql(db_url, select(*columns).order_by(OAuthUserTokenRow.identity))
