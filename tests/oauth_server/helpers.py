"""Test helpers: a headless OAuth client of Heimdall's authorization server, and store access."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from heimdall.crypto import SecretBox, load_or_create_key
from heimdall.oauth.upstream.pkce import s256_challenge
from heimdall.store.engine import create_engine, create_sessionmaker
from heimdall.store.repos import Store
from tests.support.gateway import RunningGateway

REDIRECT = "http://127.0.0.1:53682/callback"
VK_ALL = "sk-bf-as-all-000000000000000000001"
VK_ADD_ONLY = "sk-bf-as-add-000000000000000000002"
VK_INACTIVE = "sk-bf-as-off-000000000000000000003"
MCP_ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def per_user_client(name: str = "notion", url: str = "https://mcp.notion.example/mcp") -> dict[str, Any]:
    return {
        "name": name,
        "connection_type": "http",
        "connection_string": url,
        "auth_type": "per_user_oauth",
        "oauth_config": {"scopes": ["read"]},
        "tools_to_execute": ["*"],
    }


def gateway_config(notes_url: str | None = None, **sections: Any) -> dict[str, Any]:
    """One per-user client (pending verification), optionally the ``notes`` upstream, and three virtual keys."""
    clients = [per_user_client()]
    if notes_url:
        clients.append({"name": "notes", "connection_type": "http", "connection_string": notes_url})
    config: dict[str, Any] = {
        "mcp": {"client_configs": clients},
        "governance": {
            "virtual_keys": [
                {
                    "id": "vk-all",
                    "name": "all",
                    "value": VK_ALL,
                    "mcp_configs": [
                        {"mcp_client_name": "notes", "tools_to_execute": ["*"]},
                        {"mcp_client_name": "notion", "tools_to_execute": ["*"]},
                    ],
                },
                {
                    "id": "vk-add",
                    "name": "add-only",
                    "value": VK_ADD_ONLY,
                    "mcp_configs": [{"mcp_client_name": "notes", "tools_to_execute": ["add"]}],
                },
                {"id": "vk-off", "name": "inactive", "value": VK_INACTIVE, "is_active": False},
            ]
        },
    }
    config.update(sections)
    return config


def wait_for_notes(gateway: RunningGateway, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    with gateway.admin() as admin:
        while True:
            clients = admin.get("/api/mcp/clients").json()["clients"]
            if any(c["config"]["name"] == "notes" and c["state"] == "connected" for c in clients):
                return
            assert time.monotonic() < deadline, f"notes did not connect: {clients}"
            time.sleep(0.05)


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def new_verifier() -> str:
    return secrets.token_urlsafe(48)


@dataclass
class Started:
    flow_id: str
    verifier: str
    state: str


class ASClient:
    """Drives registration, authorization, consent and the token endpoint like a browser plus an MCP app."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, trust_env=False, timeout=15, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ASClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- registration and authorization ---

    def register(self, redirect_uris: list[str] | None = None, name: str = "Test client", **extra: Any) -> str:
        response = self.http.post(
            "/api/oauth/per-user/register",
            json={"client_name": name, "redirect_uris": redirect_uris or [REDIRECT], **extra},
        )
        assert response.status_code == 201, response.text
        client_id: str = response.json()["client_id"]
        return client_id

    def authorize(
        self, client_id: str, redirect_uri: str = REDIRECT, *, verifier: str | None = None, **overrides: str | None
    ) -> httpx.Response:
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "code_challenge": s256_challenge(verifier or new_verifier()),
            "code_challenge_method": "S256",
            "state": "state-123",
            "scope": "mcp:read mcp:write",
            "resource": f"{self.base_url}/mcp",
        }
        params.update(overrides)
        return self.http.get("/api/oauth/per-user/authorize", params={k: v for k, v in params.items() if v is not None})

    def start(self, client_id: str, redirect_uri: str = REDIRECT, **overrides: str | None) -> Started:
        verifier = new_verifier()
        response = self.authorize(client_id, redirect_uri, verifier=verifier, **overrides)
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        assert location.startswith("/oauth/consent?flow_id="), location
        state = overrides.get("state", "state-123") or ""
        return Started(flow_id=query_of(location)["flow_id"], verifier=verifier, state=state)

    # --- consent ---

    def identity_page(self, flow_id: str, **params: str) -> httpx.Response:
        return self.http.get("/oauth/consent", params={"flow_id": flow_id, **params})

    def csrf(self, flow_id: str) -> str:
        page = self.identity_page(flow_id)
        assert page.status_code == 200, page.text
        match = CSRF.search(page.text)
        assert match, page.text
        return match.group(1)

    def post(self, path: str, data: dict[str, str], **headers: str) -> httpx.Response:
        return self.http.post(path, data=data, headers=headers)

    def choose_vk(self, flow_id: str, vk: str, csrf: str | None = None) -> httpx.Response:
        token = self.csrf(flow_id) if csrf is None else csrf
        return self.post("/api/oauth/per-user/consent/vk", {"flow_id": flow_id, "vk": vk, "csrf_token": token})

    def skip(self, flow_id: str) -> httpx.Response:
        token = self.csrf(flow_id)
        return self.post("/api/oauth/per-user/consent/skip", {"flow_id": flow_id, "csrf_token": token})

    def finish(self, flow_id: str, csrf: str | None = None) -> httpx.Response:
        token = self.csrf(flow_id) if csrf is None else csrf
        return self.post("/api/oauth/per-user/consent/submit", {"flow_id": flow_id, "csrf_token": token})

    def code_for(
        self, client_id: str, vk: str | None = VK_ALL, redirect_uri: str = REDIRECT, **overrides: str | None
    ) -> tuple[str, Started]:
        """Authorize and consent (with a virtual key, or Skip when ``vk`` is None); returns the code."""
        started = self.start(client_id, redirect_uri, **overrides)
        chosen = self.choose_vk(started.flow_id, vk) if vk else self.skip(started.flow_id)
        assert chosen.status_code == 302 and chosen.headers["location"].startswith("/oauth/consent/mcps"), chosen.text
        done = self.finish(started.flow_id)
        assert done.status_code == 302, done.text
        params = query_of(done.headers["location"])
        assert params["iss"] == self.base_url
        return params["code"], started

    # --- token endpoint ---

    def exchange(
        self, code: str, verifier: str, client_id: str, redirect_uri: str = REDIRECT, **extra: str
    ) -> httpx.Response:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            **extra,
        }
        return self.http.post("/api/oauth/per-user/token", data=data)

    def refresh(self, refresh_token: str, client_id: str, **extra: str) -> httpx.Response:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id, **extra}
        return self.http.post("/api/oauth/per-user/token", data=data)

    def tokens(self, client_id: str | None = None, vk: str | None = VK_ALL, **overrides: str | None) -> dict[str, Any]:
        client_id = client_id or self.register()
        code, started = self.code_for(client_id, vk, REDIRECT, **overrides)
        response = self.exchange(code, started.verifier, client_id)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        body["client_id"] = client_id
        return body

    def revoke(self, token: str, **extra: str) -> httpx.Response:
        return self.http.post("/api/oauth/per-user/revoke", data={"token": token, **extra})

    # --- /mcp ---

    def mcp(self, token: str | None, method: str = "tools/list", **headers: str) -> httpx.Response:
        all_headers = dict(MCP_ACCEPT)
        if token:
            all_headers["authorization"] = f"Bearer {token}"
        all_headers.update(headers)
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}
        if method == "initialize":
            body["params"] = {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            }
        return self.http.post("/mcp", json=body, headers=all_headers)


@asynccontextmanager
async def mcp_session(url: str, **headers: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers=headers, timeout=10) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def tool_names(url: str, **headers: str) -> list[str]:
    async with mcp_session(url, **headers) as session:
        return sorted(tool.name for tool in (await session.list_tools()).tools)


def open_store(app_dir: Path, db_url: str | None = None) -> Store:
    """The running gateway's store, opened from the test (same database, same encryption key)."""
    url = db_url or f"sqlite+aiosqlite:///{app_dir / 'heimdall.db'}"
    engine = create_engine(url)
    return Store(engine, create_sessionmaker(engine), SecretBox(load_or_create_key(app_dir, None)))
