"""Server-level upstream tokens: refresh with rotation, failure classification, one refresh at a time, revocation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from heimdall.config.allowlists import AllowList
from heimdall.mcp.config import OAuthSettings
from heimdall.mcp.runtime import CredentialUnavailable, MCPClientSpec
from heimdall.oauth.upstream import (
    BackgroundRefresher,
    ServerTokenCredentials,
    TokenRefreshError,
    TokenUnavailable,
    UpstreamTokens,
    records,
)
from heimdall.oauth.upstream.token_endpoint import TokenEndpointError, UpstreamClient, exchange_code
from heimdall.store.mcp_models import OAuthConfigRow, OAuthTokenRow
from heimdall.store.repos import Store
from tests.oauth.conftest import PUBLIC_URL, call_tool, dump_database, login, open_store
from tests.support.oauth_mcp_upstream import OAuthMCPUpstream
from tests.support.servers import serve_in_thread

UpstreamFactory = Callable[..., OAuthMCPUpstream]


def spec(oauth_config_id: str | None, headers: dict[str, str] | None = None) -> MCPClientSpec:
    return MCPClientSpec(
        id="c-notes",
        name="notes",
        connection_type="http",
        url="http://upstream.invalid/mcp",
        stdio=None,
        auth_type="oauth",
        headers=headers or {},
        allowed_extra_headers=AllowList([]),
        tools_to_execute=AllowList(["*"]),
        tools_to_auto_execute=AllowList([]),
        is_ping_available=True,
        tool_sync_interval=300,
        allow_on_all_virtual_keys=False,
        oauth_config_id=oauth_config_id,
    )


async def token_row(store: Store, oauth_config_id: str) -> tuple[OAuthConfigRow, OAuthTokenRow]:
    async with store.read() as session:
        config = await session.get(OAuthConfigRow, oauth_config_id)
        assert config is not None and config.token_id is not None
        token = await session.get(OAuthTokenRow, config.token_id)
        assert token is not None
        return config, token


async def config_status(store: Store, oauth_config_id: str) -> tuple[str, str | None]:
    async with store.read() as session:
        config = await session.get(OAuthConfigRow, oauth_config_id)
        assert config is not None
        return config.status, config.status_reason


async def expire(store: Store, oauth_config_id: str, seconds_left: float = -1) -> None:
    """Move the stored token's expiry (the upstream's own expiry is left alone)."""
    _, token = await token_row(store, oauth_config_id)
    async with store.transaction() as session:
        await session.execute(
            update(OAuthTokenRow)
            .where(OAuthTokenRow.id == token.id)
            .values(expires_at=records.utcnow() + timedelta(seconds=seconds_left))
        )


def fast(store: Store) -> UpstreamTokens:
    return UpstreamTokens(store, backoff_base=0.01)


# --- refresh ------------------------------------------------------------------------------------


async def test_a_fresh_token_is_used_without_refreshing(store: Store, upstream: OAuthMCPUpstream) -> None:
    config_id = await login(store, upstream)
    tokens = fast(store)
    token = await tokens.get(config_id)
    assert token.expires_at is not None and token.value not in repr(token)
    assert await tokens.access_token(config_id) == token.value
    assert upstream.counters.refreshes == 0


async def test_refresh_rotates_the_refresh_token(store: Store, upstream: OAuthMCPUpstream) -> None:
    config_id = await login(store, upstream)
    _, before = await token_row(store, config_id)
    old_access, old_refresh = records.access_token(store.box, before), records.refresh_token(store.box, before)
    await expire(store, config_id)

    tokens = fast(store)
    new_access = await tokens.access_token(config_id)
    assert new_access != old_access
    (refresh,) = upstream.counters.grants("refresh_token")
    assert refresh["form"]["refresh_token"] == old_refresh
    assert refresh["form"]["resource"] == upstream.mcp_url and "scope" not in refresh["form"]

    _, after = await token_row(store, config_id)
    new_refresh = records.refresh_token(store.box, after)
    assert new_refresh and new_refresh != old_refresh
    assert old_refresh not in upstream.provider.refresh_tokens and new_refresh in upstream.provider.refresh_tokens
    assert after.last_refreshed_at is not None
    expires_at = records.as_utc(after.expires_at)
    assert expires_at is not None and expires_at > records.utcnow() + timedelta(minutes=59)
    assert await call_tool(upstream, new_access, "whoami") == "alice"
    dump = await dump_database(store)
    assert new_access not in dump and new_refresh not in dump

    await expire(store, config_id)  # the next refresh uses the rotated token
    await tokens.access_token(config_id)
    assert upstream.counters.grants("refresh_token")[1]["form"]["refresh_token"] == new_refresh


async def test_without_rotation_the_refresh_token_is_kept(store: Store, upstream_factory: UpstreamFactory) -> None:
    upstream = upstream_factory(rotate_refresh_tokens=False)
    config_id = await login(store, upstream)
    _, before = await token_row(store, config_id)
    await expire(store, config_id)
    await fast(store).access_token(config_id)
    _, after = await token_row(store, config_id)
    assert records.refresh_token(store.box, after) == records.refresh_token(store.box, before)


async def test_without_expires_in_there_is_no_known_expiry(store: Store, upstream_factory: UpstreamFactory) -> None:
    upstream = upstream_factory(omit_expires_in=True)
    config_id = await login(store, upstream)
    _, token = await token_row(store, config_id)
    assert token.expires_at is None  # W17: not "expires now"
    tokens = fast(store)
    assert (await tokens.get(config_id)).expires_at is None
    assert await tokens.expiring(within=10**9) == []
    assert upstream.counters.refreshes == 0


# --- failure classification ---------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["invalid_grant", "invalid_client"])
async def test_permanent_failures_need_reauthorization(
    store: Store, upstream_factory: UpstreamFactory, failure: str
) -> None:
    upstream = upstream_factory(refresh_failure=failure)
    config_id = await login(store, upstream)
    await expire(store, config_id)
    tokens = fast(store)
    with pytest.raises(TokenRefreshError) as raised:
        await tokens.get(config_id)
    assert raised.value.kind == "permanent"
    assert upstream.counters.refreshes == 1  # never retried
    status, reason = await config_status(store, config_id)
    assert status == "needs_reauth" and reason is not None and failure in reason

    with pytest.raises(TokenUnavailable):
        await tokens.get(config_id)
    credentials = ServerTokenCredentials(tokens)
    with pytest.raises(CredentialUnavailable, match=f"^notes needs re-authorization: .*{failure}"):
        await credentials.headers_for(spec(config_id), None)
    assert upstream.counters.refreshes == 1


async def test_other_client_errors_fail_fast(store: Store, upstream_factory: UpstreamFactory) -> None:
    upstream = upstream_factory(refresh_failure="invalid_request")
    config_id = await login(store, upstream)
    await expire(store, config_id)
    with pytest.raises(TokenRefreshError) as raised:
        await fast(store).get(config_id)
    assert raised.value.kind == "rejected"
    assert upstream.counters.refreshes == 1
    assert (await config_status(store, config_id))[0] == "authorized"


async def test_transient_failures_are_retried(store: Store, upstream_factory: UpstreamFactory) -> None:
    upstream = upstream_factory(refresh_failure="transient", refresh_failures_left=2)
    config_id = await login(store, upstream)
    await expire(store, config_id)
    token = await fast(store).access_token(config_id)
    assert upstream.counters.refreshes == 3
    assert await call_tool(upstream, token, "whoami") == "alice"
    assert (await config_status(store, config_id))[0] == "authorized"


async def test_transient_failures_give_up_after_three_attempts(store: Store, upstream_factory: UpstreamFactory) -> None:
    upstream = upstream_factory(refresh_failure="transient")
    config_id = await login(store, upstream)
    tokens = fast(store)

    await expire(store, config_id, seconds_left=30)  # inside the refresh margin, still valid
    _, token = await token_row(store, config_id)
    assert await tokens.access_token(config_id) == records.access_token(store.box, token)
    assert upstream.counters.refreshes == 3

    await expire(store, config_id)
    started = time.monotonic()
    with pytest.raises(TokenRefreshError) as raised:
        await tokens.get(config_id)
    assert raised.value.kind == "transient"
    assert upstream.counters.refreshes == 6
    assert time.monotonic() - started < 5
    assert (await config_status(store, config_id))[0] == "authorized"


async def test_an_expired_token_without_refresh_token(store: Store, upstream_factory: UpstreamFactory) -> None:
    upstream = upstream_factory(issue_refresh_tokens=False)
    config_id = await login(store, upstream)
    await expire(store, config_id)
    with pytest.raises(TokenRefreshError) as raised:
        await fast(store).get(config_id)
    assert raised.value.kind == "permanent"
    assert upstream.counters.refreshes == 0
    assert (await config_status(store, config_id))[0] == "needs_reauth"


# --- one refresh at a time ----------------------------------------------------------------------


async def test_concurrent_refreshes_make_one_upstream_call(store: Store, upstream_factory: UpstreamFactory) -> None:
    upstream = upstream_factory(refresh_delay=0.3)
    config_id = await login(store, upstream)
    await expire(store, config_id)
    tokens = fast(store)
    results = await asyncio.gather(*(tokens.access_token(config_id) for _ in range(5)))
    assert len(set(results)) == 1
    assert upstream.counters.refreshes == 1


async def test_concurrent_refreshes_across_two_stores(
    store: Store, db_url: str, encryption_key: str, upstream_factory: UpstreamFactory
) -> None:
    """Two gateway processes share one database: the lock holds across them (row lock / file lock)."""
    upstream = upstream_factory(refresh_delay=0.3)
    config_id = await login(store, upstream)
    other = await open_store(db_url, encryption_key, migrate=False)
    try:
        first, second = fast(store), fast(other)
        await expire(store, config_id)
        results = await asyncio.gather(*(tokens.access_token(config_id) for tokens in (first, second) * 3))
        assert len(set(results)) == 1
        assert upstream.counters.refreshes == 1

        # Both see the upstream reject the same token: still one refresh.
        stale = results[0]
        forced = await asyncio.gather(
            first.refresh(config_id, force=True, stale_access_token=stale),
            second.refresh(config_id, force=True, stale_access_token=stale),
        )
        assert forced[0].value == forced[1].value != stale
        assert upstream.counters.refreshes == 2
    finally:
        await other.engine.dispose()


# --- the credential resolver and the background refresher ---------------------------------------


async def test_server_token_credentials(store: Store, upstream: OAuthMCPUpstream) -> None:
    config_id = await login(store, upstream)
    credentials = ServerTokenCredentials(fast(store))
    client = spec(config_id, {"X-Tenant": "acme", "authorization": "Basic old"})
    headers = await credentials.headers_for(client, None)
    token = headers["Authorization"].removeprefix("Bearer ")
    assert headers == {"X-Tenant": "acme", "Authorization": f"Bearer {token}"}
    assert await call_tool(upstream, token, "whoami") == "alice"

    upstream.provider.invalidate_access_tokens()  # the upstream now answers 401
    challenge = 'Bearer error="invalid_token"'
    assert await asyncio.gather(*(credentials.unauthorized(client, None, challenge) for _ in range(3))) == [True] * 3
    assert upstream.counters.refreshes == 1
    fresh = (await credentials.headers_for(client, None))["Authorization"].removeprefix("Bearer ")
    assert fresh != token and await call_tool(upstream, fresh, "whoami") == "alice"

    assert not await credentials.unauthorized(client, None, 'Bearer error="insufficient_scope", scope="admin"')
    assert upstream.counters.refreshes == 1
    with pytest.raises(CredentialUnavailable, match="^notes needs re-authorization"):
        await credentials.headers_for(spec(None), None)


async def test_background_refresher(store: Store, upstream: OAuthMCPUpstream) -> None:
    config_id = await login(store, upstream)
    refresher = BackgroundRefresher(fast(store), interval=0.05, window=300)
    await expire(store, config_id, seconds_left=120)  # due within the window, not yet within the inline margin
    assert await refresher.run_once() == 1
    assert upstream.counters.refreshes == 1
    assert await refresher.run_once() == 0

    await expire(store, config_id, seconds_left=120)
    refresher.start()
    try:
        for _ in range(250):  # the upstream counts in its own thread: poll, at most 5 s
            if upstream.counters.refreshes >= 2:
                break
            await asyncio.sleep(0.02)
    finally:
        await refresher.stop()
    assert upstream.counters.refreshes == 2
    _, token = await token_row(store, config_id)
    expires_at = records.as_utc(token.expires_at)
    assert expires_at is not None and expires_at > records.utcnow() + timedelta(minutes=59)


async def test_expiring_lists_only_refreshable_authorized_tokens(store: Store, upstream: OAuthMCPUpstream) -> None:
    refreshable = await login(store, upstream)
    revoked = await login(store, upstream, user="bob")
    for config_id in (refreshable, revoked):
        await expire(store, config_id, seconds_left=100)
    async with store.transaction() as session:
        await session.execute(update(OAuthConfigRow).where(OAuthConfigRow.id == revoked).values(status="revoked"))
    assert await fast(store).expiring(within=300) == [refreshable]
    assert await fast(store).expiring(within=10) == []
    async with store.read() as session:
        assert len((await session.scalars(select(OAuthTokenRow))).all()) == 2


# --- the token endpoint client ------------------------------------------------------------------


async def test_basic_credentials_are_form_encoded(store: Store, upstream: OAuthMCPUpstream) -> None:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded before base64, so ':' and '%' survive."""
    client_id, _ = upstream.register_client(f"{PUBLIC_URL}/api/oauth/callback", auth_method="client_secret_basic")
    secret = "se:cr%et/+ x"
    upstream.provider.clients[client_id].client_secret = secret
    config_id = await login(store, upstream, oauth=OAuthSettings(client_id=client_id, client_secret=secret))
    await expire(store, config_id)
    await fast(store).access_token(config_id)
    assert upstream.counters.refreshes == 1
    assert all((request["authorization"] or "").startswith("Basic ") for request in upstream.counters.token_requests)


async def test_refusals_never_echo_secrets() -> None:
    async def token(request: Request) -> Response:
        form = await request.form()
        return JSONResponse({"error": "invalid_grant", "error_description": f"code {form['code']} is unknown"}, 400)

    server = serve_in_thread(Starlette(routes=[Route("/token", token, methods=["POST"])]))
    try:
        upstream = UpstreamClient(
            client_id="c", client_secret=None, auth_method="none", authorize_url="", token_url=f"{server.url}/token"
        )
        with pytest.raises(TokenEndpointError) as raised:
            await exchange_code(upstream, code="the-secret-code", verifier="v" * 43, redirect_uri="http://gw/cb")
    finally:
        server.stop()
    assert raised.value.kind == "permanent" and raised.value.error == "invalid_grant"
    assert "the-secret-code" not in str(raised.value) and "[redacted]" in str(raised.value)
