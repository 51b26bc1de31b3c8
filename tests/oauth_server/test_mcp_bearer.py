"""/mcp with our access tokens: challenges (RFC 6750, RFC 9728 §5.1), invalid tokens, scopes, identity
from the grant (identity headers ignored, W13), and MCP session ownership."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from heimdall.oauth.upstream.records import utcnow
from heimdall.store.per_user_models import ASGrantRow, ASTokenRow
from tests.oauth_server.helpers import (
    MCP_ACCEPT,
    VK_ADD_ONLY,
    VK_ALL,
    ASClient,
    mcp_session,
    open_store,
    tool_names,
)
from tests.support.gateway import RunningGateway


def expected_challenge(gateway: RunningGateway, prefix: str = "") -> str:
    return (
        f'Bearer {prefix}resource_metadata="{gateway.url}/.well-known/oauth-protected-resource/mcp", '
        'scope="mcp:read mcp:write"'
    )


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
def test_no_credentials_get_the_discovery_challenge(gateway: RunningGateway, method: str) -> None:
    response = httpx.request(
        method, f"{gateway.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=MCP_ACCEPT
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == expected_challenge(gateway)
    assert response.json()["error"]["message"] == "oauth authentication required for mcp access"


def test_a_virtual_key_still_works_without_oauth(gateway: RunningGateway, client: ASClient) -> None:
    response = client.mcp(None, "initialize", **{"x-bf-vk": VK_ALL})
    assert response.status_code == 200


@pytest.mark.parametrize("token", [b"not-a-token", b"x" * 600, "\u00e9-latin1".encode("latin-1")])
def test_unknown_tokens_are_invalid_token(gateway: RunningGateway, client: ASClient, token: bytes) -> None:
    response = client.http.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers=[*((k.encode(), v.encode()) for k, v in MCP_ACCEPT.items()), (b"authorization", b"Bearer " + token)],
    )
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="')
    assert challenge.endswith(
        f'resource_metadata="{gateway.url}/.well-known/oauth-protected-resource/mcp", scope="mcp:read mcp:write"'
    )


async def test_identity_comes_from_the_grant_not_the_headers(gateway: RunningGateway, client: ASClient) -> None:
    limited = client.tokens(vk=VK_ADD_ONLY)["access_token"]
    full = client.tokens(vk=VK_ALL)["access_token"]
    assert await tool_names(gateway.url, authorization=f"Bearer {limited}") == ["notes-add"]
    spoofed = await tool_names(
        gateway.url,
        authorization=f"Bearer {limited}",
        **{"x-bf-vk": VK_ALL, "x-api-key": VK_ALL, "x-bf-user-id": "alice"},
    )
    assert spoofed == ["notes-add"]
    assert "notes-echo" in await tool_names(gateway.url, authorization=f"Bearer {full}")


async def test_skipped_identity_sees_the_global_view(gateway: RunningGateway, client: ASClient) -> None:
    token = client.tokens(vk=None)["access_token"]
    assert "notes-echo" in await tool_names(gateway.url, authorization=f"Bearer {token}")


def test_mcp_sessions_stay_with_their_grant(gateway: RunningGateway, client: ASClient) -> None:
    token = client.tokens()["access_token"]
    other = client.tokens()["access_token"]
    opened = client.mcp(token, "initialize")
    assert opened.status_code == 200
    session_id = opened.headers["mcp-session-id"]
    for headers in ({"authorization": f"Bearer {other}"}, {"x-bf-vk": VK_ALL}):
        hijack = client.http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            headers={**MCP_ACCEPT, "mcp-session-id": session_id, **headers},
        )
        assert hijack.status_code == 404, headers
    same = client.http.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        headers={**MCP_ACCEPT, "mcp-session-id": session_id, "authorization": f"Bearer {token}"},
    )
    assert same.status_code == 200


async def test_scopes_are_enforced(gateway: RunningGateway, client: ASClient) -> None:
    read_only = client.tokens(scope="mcp:read")["access_token"]
    assert "notes-add" in await tool_names(gateway.url, authorization=f"Bearer {read_only}")
    for method in ("tools/call", "prompts/get", "resources/read", "completion/complete", "some/new-method"):
        response = client.mcp(read_only, method)
        assert response.status_code == 403, method
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer error="insufficient_scope"')
        assert challenge.endswith('scope="mcp:read mcp:write"')
    batch = client.http.post(
        "/mcp",
        json=[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, {"jsonrpc": "2.0", "id": 2, "method": "tools/call"}],
        headers={**MCP_ACCEPT, "authorization": f"Bearer {read_only}"},
    )
    assert batch.status_code == 403
    for method in ("initialize", "ping", "notifications/initialized"):
        assert client.mcp(read_only, method).status_code != 403, method

    write_only = client.tokens(scope="mcp:write")["access_token"]  # mcp:write includes mcp:read
    async with mcp_session(gateway.url, authorization=f"Bearer {write_only}") as session:
        assert "notes-add" in {tool.name for tool in (await session.list_tools()).tools}
        added = await session.call_tool("notes-add", {"a": 2, "b": 3})
        assert not added.is_error


async def test_expired_and_foreign_audience_tokens(gateway: RunningGateway, client: ASClient) -> None:
    expired = client.tokens()["access_token"]
    foreign = client.tokens()["access_token"]
    store = open_store(gateway.app_dir)
    try:
        async with store.transaction() as session:
            await session.execute(
                update(ASTokenRow)
                .where(ASTokenRow.token_hash == store.box.lookup_hash(expired))
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
            await session.execute(
                update(ASTokenRow)
                .where(ASTokenRow.token_hash == store.box.lookup_hash(foreign))
                .values(audience="https://other-gateway.example/mcp")
            )
    finally:
        await store.engine.dispose()
    for token, reason in ((expired, "expired"), (foreign, "not meant for this resource")):
        response = client.mcp(token, "initialize")
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert reason in response.headers["www-authenticate"]


async def test_another_process_revoking_a_grant_takes_effect_within_five_seconds(
    gateway: RunningGateway, client: ASClient
) -> None:
    token = client.tokens()["access_token"]
    assert client.mcp(token, "initialize").status_code == 200
    store = open_store(gateway.app_dir)
    try:
        async with store.transaction() as session:
            grant_id = (
                await session.scalars(
                    select(ASTokenRow.grant_id).where(ASTokenRow.token_hash == store.box.lookup_hash(token))
                )
            ).one()
            await session.execute(update(ASGrantRow).where(ASGrantRow.id == grant_id).values(revoked_at=utcnow()))
    finally:
        await store.engine.dispose()
    deadline = time.monotonic() + 6.5
    while client.mcp(token, "initialize").status_code == 200:
        assert time.monotonic() < deadline, "the revocation was not seen within the cache lifetime"
        await asyncio.sleep(0.25)
    assert "revoked" in client.mcp(token, "initialize").headers["www-authenticate"]


def test_a_deactivated_virtual_key_invalidates_its_tokens(gateway: RunningGateway, client: ASClient) -> None:
    with gateway.admin() as admin:
        created = admin.post("/api/governance/virtual-keys", json={"name": "temporary", "value": "sk-bf-as-temp-0001"})
        assert created.status_code == 201, created.text
        vk_id = created.json()["id"]
        time.sleep(0.1)
        token = client.tokens(vk="sk-bf-as-temp-0001")["access_token"]
        assert client.mcp(token, "initialize").status_code == 200
        assert admin.put(f"/api/governance/virtual-keys/{vk_id}", json={"is_active": False}).status_code == 200
    response = client.mcp(token, "initialize")
    assert response.status_code == 401
    assert "no longer active" in response.headers["www-authenticate"]
