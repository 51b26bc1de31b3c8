"""The per-user modules against the store directly (SQLite and PostgreSQL), next to a running gateway.

A second, in-process gateway object opens the running gateway's database and key: it creates
links and rows the way the consent pages and the resolver do, and the running gateway serves them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select, update

from heimdall.app import close_gateway, open_gateway
from heimdall.gateway import Gateway
from heimdall.mcp.runtime import AuthRequired, Caller, CredentialUnavailable, MCPClientSpec
from heimdall.mcp.specs import build_specs
from heimdall.oauth.per_user import grants, handoffs, portal, tokens
from heimdall.oauth.per_user.connections import connect_link, services_for
from heimdall.oauth.per_user.credentials import PerUserCredentials
from heimdall.oauth.per_user.identity import Identity, identity_of
from heimdall.oauth.per_user.locks import locks_for
from heimdall.oauth.per_user.sweep import sweep_upstream_logins
from heimdall.oauth.server.bearer import virtual_key_by_id
from heimdall.oauth.upstream.records import utcnow
from heimdall.oauth.upstream.token_endpoint import TokenResponse
from heimdall.settings import Settings
from heimdall.store import mcp_repos
from heimdall.store.per_user_models import OAuthHandoffRow, OAuthUserAttemptRow, OAuthUserTokenRow
from tests.per_user.conftest import VK_ALICE, VK_BOB, Browser, Env, auth_required, execute, token_rows


@asynccontextmanager
async def beside(env: Env) -> AsyncIterator[Gateway]:
    """A gateway object on the running gateway's database, key and public URL (not serving)."""
    port = urlsplit(env.gateway.url).port
    settings = Settings(app_dir=env.gateway.app_dir, db_url=env.db_url, port=port, admin_token=env.gateway.admin_token)
    gateway = await open_gateway(settings)
    try:
        yield gateway
    finally:
        await close_gateway(gateway)


async def spec_of(gateway: Gateway, client_id: str) -> MCPClientSpec:
    async with gateway.store.read() as session:
        rows = await mcp_repos.list_clients(session)
    return next(spec for spec in build_specs(gateway.box, rows, 60) if spec.id == client_id)


async def test_services_for_follows_the_keys_grants_and_the_identitys_tokens(env: Env, browser: Browser) -> None:
    async with beside(env) as gateway:
        alice = virtual_key_by_id(gateway, "vk-alice")
        nobody = virtual_key_by_id(gateway, "vk-none")
        async with gateway.store.read() as session:
            for_alice = await services_for(gateway, session, identity_kind="vk", identity="vk-alice", vk=alice)
            for_none = await services_for(gateway, session, identity_kind="vk", identity="vk-none", vk=nobody)
            for_user = await services_for(gateway, session, identity_kind="user", identity="zoe", vk=None)
            skipped = await services_for(gateway, session, identity_kind=None, identity=None, vk=None)
        assert [(v.name, v.connected, v.needs_reauth) for v in for_alice] == [
            ("notes_a", False, False),
            ("notes_b", False, False),
        ]
        assert [v.name for v in for_none] == ["notes_b"]  # allow_on_all_virtual_keys only
        assert [v.name for v in for_user] == [v.name for v in skipped] == ["notes_a", "notes_b"]
        link = auth_required(await asyncio.to_thread(execute, env.gateway, "notes_a-whoami", vk=VK_ALICE))
        assert (await asyncio.to_thread(browser.connect, link["authorize_url"], "alice")).status_code == 200
        async with gateway.store.transaction() as session:
            connected = await services_for(gateway, session, identity_kind="vk", identity="vk-alice", vk=alice)
            assert [(v.name, v.connected, v.needs_reauth) for v in connected][0] == ("notes_a", True, False)
            await session.execute(update(OAuthUserTokenRow).values(status=tokens.NEEDS_REAUTH))
            stale = await services_for(gateway, session, identity_kind="vk", identity="vk-alice", vk=alice)
            assert [(v.name, v.connected, v.needs_reauth) for v in stale][0] == ("notes_a", True, True)


async def test_a_consent_link_returns_to_the_consent_services_page(env: Env, browser: Browser) -> None:
    async with beside(env) as gateway:
        async with gateway.store.transaction() as session:
            link = await connect_link(
                gateway,
                session,
                mcp_client_id=env.client_ids["notes_b"],
                identity_kind="user",
                identity="zoe",
                flow_id="flow-42",
            )
            with pytest.raises(ValueError):
                client_id = env.client_ids["notes_b"]
                await connect_link(
                    gateway, session, mcp_client_id=client_id, identity_kind="x", identity="y", flow_id=None
                )
    assert link.startswith(f"{env.gateway.url}/oauth/connect/")
    landed = await asyncio.to_thread(browser.connect, link, "zoe")
    assert landed.status_code == 302 and landed.headers["location"] == "/oauth/consent/mcps?flow_id=flow-42"
    assert landed.headers["x-frame-options"] == "DENY"


async def test_only_keyed_hashes_of_link_ids_are_stored(env: Env) -> None:
    async with beside(env) as gateway:
        async with gateway.store.transaction() as session:
            alice = Identity("vk", "vk-alice")
            created = await handoffs.create(
                gateway, session, mcp_client_id=env.client_ids["notes_a"], identity=alice, flow_id=None
            )
        handoff_id = created.url.rsplit("/", 1)[1]
        assert len(handoff_id) == 43  # 32 random bytes, base64url
        async with gateway.store.read() as session:
            stored = list((await session.scalars(select(OAuthHandoffRow.id_hash))).all())
        assert handoff_id not in stored and len(stored) == 1 and created.handle.removeprefix("h-") in stored[0]


async def test_the_sweeper_removes_used_and_expired_links_and_old_attempts(env: Env) -> None:
    async with beside(env) as gateway:
        ids = []
        for _ in range(4):
            async with gateway.store.transaction() as session:
                made = await handoffs.create(
                    gateway,
                    session,
                    mcp_client_id=env.client_ids["notes_a"],
                    identity=Identity("vk", "vk-alice"),
                    flow_id=None,
                )
            ids.append(made.url.rsplit("/", 1)[1])
        await handoffs.begin_login(gateway, ids[0])  # used, with a live attempt
        await handoffs.begin_login(gateway, ids[1])  # used, with an attempt that expires below
        past = utcnow() - timedelta(minutes=1)
        async with gateway.store.transaction() as session:
            first_attempt = (await session.scalars(select(OAuthUserAttemptRow.id))).first()
            await session.execute(
                update(OAuthUserAttemptRow).where(OAuthUserAttemptRow.id != first_attempt).values(expires_at=past)
            )
            hash_of_expired = handoffs._id_hash(gateway, ids[2])
            await session.execute(
                update(OAuthHandoffRow).where(OAuthHandoffRow.id_hash == hash_of_expired).values(expires_at=past)
            )
        async with gateway.store.transaction() as session:
            removed = await sweep_upstream_logins(session, utcnow())
        assert removed == 4  # two used links, one expired link, one expired attempt
        async with gateway.store.read() as session:
            assert await session.scalar(select(func.count()).select_from(OAuthHandoffRow)) == 1
            assert await session.scalar(select(func.count()).select_from(OAuthUserAttemptRow)) == 1


async def test_concurrent_logins_of_one_identity_leave_one_row(env: Env) -> None:
    async with beside(env) as gateway:
        identity = Identity("user", "zed")

        async def login(n: int) -> str:
            return await tokens.save_login(
                gateway.store,
                locks_for(gateway),
                mcp_client_id=env.client_ids["notes_a"],
                oauth_config_id=None,
                identity=identity,
                tokens=TokenResponse(access_token=f"access-{n}", refresh_token=f"refresh-{n}", expires_in=60),
                scopes=["notes:read"],
            )

        row_ids = await asyncio.gather(*(login(n) for n in range(5)))
        assert len(set(row_ids)) == 1
        async with gateway.store.read() as session:
            rows = list((await session.scalars(select(OAuthUserTokenRow))).all())
        assert len(rows) == 1 and rows[0].identity == "zed"
        assert tokens.access_token(gateway.box, rows[0]).startswith("access-")
        moved = rows[0]
        moved.id = "another-row"
        with pytest.raises(Exception, match="does not decrypt"):
            tokens.access_token(gateway.box, moved)  # the ciphertext is bound to its row


async def test_the_resolver_needs_a_caller_and_an_identity(env: Env) -> None:
    async with beside(env) as gateway:
        resolver = PerUserCredentials(gateway)
        spec = await spec_of(gateway, env.client_ids["notes_a"])
        with pytest.raises(CredentialUnavailable, match="no shared connection"):
            await resolver.headers_for(spec, None)
        with pytest.raises(CredentialUnavailable, match="include X-Bf-User-Id or a Virtual Key"):
            await resolver.headers_for(spec, Caller())
        with pytest.raises(CredentialUnavailable, match="through its OAuth sign-in or with a Virtual Key"):
            await resolver.headers_for(spec, Caller(on_mcp_gateway=True))
        with pytest.raises(AuthRequired) as required:
            await resolver.headers_for(spec, Caller(session_key="skip-session", on_mcp_gateway=True))
        assert required.value.payload()["message"] == (
            "Authentication required for notes_a. Please visit the authorize URL to connect your account."
        )
        page = await handoffs.page(gateway, required.value.authorize_url.rsplit("/", 1)[1])
        assert page.identity == "this MCP session" and page.service == "notes_a"
        assert await resolver.unauthorized(spec, None, None) is False
        without_template = dataclasses.replace(spec, oauth_config_id=None)
        with pytest.raises(CredentialUnavailable, match="no OAuth configuration"):
            await resolver.headers_for(without_template, Caller(vk_id="vk-alice"))


def test_identity_priority_is_user_then_key_then_session() -> None:
    assert identity_of(Caller(user_id="u", vk_id="k", session_key="s")) == Identity("user", "u")
    assert identity_of(Caller(vk_id="k", session_key="s")) == Identity("vk", "k")
    assert identity_of(Caller(session_key="s")) == Identity("session", "s")
    assert identity_of(Caller()) is None and identity_of(None) is None


async def test_connections_page_sessions_are_signed_and_expire(env: Env) -> None:
    async with beside(env) as gateway:
        cookie = portal.issue(gateway, Identity("vk", "vk-alice"), now=1000.0, ttl=60)
        assert portal.read(gateway, cookie, now=1030.0) == Identity("vk", "vk-alice")
        assert portal.read(gateway, cookie, now=1061.0) is None
        payload, signature = cookie.rsplit(".", 1)
        assert portal.read(gateway, f"{payload}x.{signature}", now=1030.0) is None
        assert portal.read(gateway, "garbage", now=1030.0) is None
        gone = portal.issue(gateway, Identity("vk", "vk-deleted"), now=1000.0, ttl=60)
        assert portal.read(gateway, gone, now=1030.0) is None  # the key no longer exists
        user = portal.issue(gateway, Identity("user", "oidc-user"), now=1000.0, ttl=60)
        assert portal.read(gateway, user, now=1030.0) == Identity("user", "oidc-user")


async def test_removing_a_clients_grants_revokes_each_upstream(env: Env, browser: Browser) -> None:
    for vk, user in ((VK_ALICE, "alice"), (VK_BOB, "bob")):
        link = auth_required(await asyncio.to_thread(execute, env.gateway, "notes_a-whoami", vk=vk))
        with Browser() as someone:
            assert (await asyncio.to_thread(someone.connect, link["authorize_url"], user)).status_code == 200
    async with beside(env) as gateway:
        assert await grants.revoke_client_grants(gateway, env.client_ids["notes_a"]) == 2
        assert await grants.revoke_client_grants(gateway, env.client_ids["notes_a"]) == 0
    assert len(env.a.counters.revocations) == 4 and await asyncio.to_thread(token_rows, env.db_url) == []
