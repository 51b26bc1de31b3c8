"""Fixtures for the upstream OAuth tests: the OAuth-protected MCP upstream, a migrated store, headless logins."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import select

from heimdall.crypto import SecretBox, generate_key, parse_key
from heimdall.mcp.config import OAuthSettings
from heimdall.oauth.upstream import complete_authorization, start_oauth_for_client
from heimdall.oauth.upstream.flow import Purpose
from heimdall.store.base import Base
from heimdall.store.engine import create_engine, create_sessionmaker
from heimdall.store.migrate import upgrade_to_head
from heimdall.store.repos import Store
from tests.support.oauth_mcp_upstream import OAuthMCPUpstream, start_oauth_mcp_upstream

#: The gateway's public URL in tests that need no running gateway (the callback is never contacted).
PUBLIC_URL = "http://gateway.heimdall.test"

UpstreamFactory = Callable[..., OAuthMCPUpstream]


@pytest.fixture
def upstream_factory() -> Iterator[UpstreamFactory]:
    started: list[OAuthMCPUpstream] = []

    def factory(**knobs: Any) -> OAuthMCPUpstream:
        upstream = start_oauth_mcp_upstream(**knobs)
        started.append(upstream)
        return upstream

    yield factory
    for upstream in started:
        upstream.stop()


@pytest.fixture
def upstream(upstream_factory: UpstreamFactory) -> OAuthMCPUpstream:
    return upstream_factory()


@pytest.fixture
def encryption_key() -> str:
    return generate_key()


async def open_store(db_url: str, key: str, *, migrate: bool = True) -> Store:
    engine = create_engine(db_url)
    if migrate:
        await upgrade_to_head(engine)
    return Store(engine, create_sessionmaker(engine), SecretBox(parse_key(key)))


@pytest.fixture
async def store(db_url: str, encryption_key: str) -> AsyncIterator[Store]:
    opened = await open_store(db_url, encryption_key)
    yield opened
    await opened.engine.dispose()


async def follow_login(authorize_url: str, user: str = "alice", *, deny: bool = False) -> str:
    """Drive the upstream login headlessly; returns the redirect back to the gateway (not followed)."""
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        first = await client.get(authorize_url)
        assert first.status_code == 302, first.text
        login = first.headers["location"] + ("&deny=1" if deny else f"&user={user}")
        second = await client.get(login)
        assert second.status_code == 302, second.text
        location: str = second.headers["location"]
        return location


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


async def login(
    store: Store,
    upstream: OAuthMCPUpstream,
    *,
    user: str = "alice",
    oauth: OAuthSettings | None = None,
    purpose: Purpose = "server",
) -> str:
    """A complete login without a running gateway: start, approve upstream, complete. Returns the config id."""
    pending = await start_oauth_for_client(
        store, base_url=PUBLIC_URL, server_url=upstream.mcp_url, oauth=oauth or OAuthSettings(), purpose=purpose
    )
    params = query_of(await follow_login(pending["authorize_url"], user))
    row = await complete_authorization(store, state=params["state"], code=params["code"], iss=params.get("iss"))
    assert row.status == "authorized"
    return pending["oauth_config_id"]


async def call_tool(upstream: OAuthMCPUpstream, token: str, name: str, arguments: dict[str, Any] | None = None) -> Any:
    """Call one upstream tool with a bearer token; the structured result."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10) as http,
        streamable_http_client(upstream.mcp_url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool(name, arguments or {})
        assert not result.is_error, result.content
        return (result.structured_content or {}).get("result")


async def dump_database(store: Store) -> str:
    """Every value of every table, as text."""
    parts: list[str] = []
    async with store.read() as session:
        for table in Base.metadata.sorted_tables:
            parts.append(repr((await session.execute(select(table))).all()))
    return "\n".join(parts)
