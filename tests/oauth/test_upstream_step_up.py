"""Step-up authorization of a server-level OAuth client: a 403 ``insufficient_scope`` needs an admin's new login."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from heimdall.config.allowlists import AllowList
from heimdall.mcp.config import OAuthSettings
from heimdall.mcp.runtime import CredentialUnavailable, MCPClientSpec
from heimdall.oauth.upstream import ServerTokenCredentials, UpstreamTokens, step_up
from heimdall.oauth.upstream.flow import begin_authorization, complete_authorization
from heimdall.store.mcp_models import OAuthConfigRow, OAuthTokenRow
from heimdall.store.repos import Store
from tests.oauth.conftest import PUBLIC_URL, follow_login, login, query_of
from tests.support.oauth_mcp_upstream import OAuthMCPUpstream

UpstreamFactory = Callable[..., OAuthMCPUpstream]
WIDER = 'Bearer error="insufficient_scope", scope="notes:write", error_description="needs more"'


def spec(oauth_config_id: str) -> MCPClientSpec:
    return MCPClientSpec(
        id="c-notes",
        name="notes",
        connection_type="http",
        url="http://upstream.invalid/mcp",
        stdio=None,
        auth_type="oauth",
        headers={},
        allowed_extra_headers=AllowList([]),
        tools_to_execute=AllowList(["*"]),
        tools_to_auto_execute=AllowList([]),
        is_ping_available=True,
        tool_sync_interval=300,
        allow_on_all_virtual_keys=False,
        oauth_config_id=oauth_config_id,
    )


async def config_and_scopes(store: Store, oauth_config_id: str) -> tuple[OAuthConfigRow, list[str]]:
    async with store.read() as session:
        config = await session.get(OAuthConfigRow, oauth_config_id)
        assert config is not None and config.token_id is not None
        token = await session.get(OAuthTokenRow, config.token_id)
        assert token is not None
        return config, list(token.scopes)


def test_scope_union_and_reasons_round_trip() -> None:
    assert step_up.widened(["a", "b"], ["b", "c", "c"]) == ("a", "b", "c")
    assert step_up.widened(["a", "b"], ["b"]) is None
    assert step_up.widened(["a"], None) is None
    for step in (step_up.StepUp(("a", "b:c")), step_up.StepUp(("x",), count=2)):
        assert step_up.parse(step_up.describe(step)) == step
    assert step_up.describe(step_up.StepUp(("a", "b"))) == "upstream requires wider scope: a b"
    assert step_up.describe(step_up.StepUp(("a",), 1)) == "upstream requires wider scope (step-up 1 of 2): a"
    assert step_up.parse("token refresh failed: invalid_grant") is None
    assert step_up.parse(None) is None


def read_only(upstream: OAuthMCPUpstream) -> OAuthSettings:
    """A pre-registered client (allowed every scope) configured to ask for ``notes:read`` only.

    A client registered dynamically for ``notes:read`` would be refused wider scopes by this upstream.
    """
    client_id, secret = upstream.register_client(f"{PUBLIC_URL}/api/oauth/callback", auth_method="client_secret_basic")
    return OAuthSettings(client_id=client_id, client_secret=secret, scopes=["notes:read"])


async def test_insufficient_scope_marks_the_config_for_an_admin_login_with_wider_scopes(
    store: Store, upstream_factory: UpstreamFactory
) -> None:
    upstream = upstream_factory(token_auth_methods=["client_secret_basic"])
    config_id = await login(store, upstream, oauth=read_only(upstream))
    config, scopes = await config_and_scopes(store, config_id)
    assert config.scopes == ["notes:read"] and scopes == ["notes:read"]
    credentials = ServerTokenCredentials(UpstreamTokens(store, backoff_base=0.01))
    client = spec(config_id)
    await credentials.headers_for(client, None)  # cached now: the step-up must not hand it out again

    assert await credentials.unauthorized(client, None, WIDER) is False
    config, _ = await config_and_scopes(store, config_id)
    assert (config.status, config.status_reason) == (
        "needs_reauth",
        "upstream requires wider scope: notes:read notes:write",
    )
    with pytest.raises(CredentialUnavailable, match="^notes needs re-authorization: upstream requires wider scope: "):
        await credentials.headers_for(client, None)
    assert upstream.counters.refreshes == 0  # a refresh cannot widen a grant

    pending = await begin_authorization(store, config_id, base_url=PUBLIC_URL)
    assert query_of(pending["authorize_url"])["scope"] == "notes:read notes:write"
    params = query_of(await follow_login(pending["authorize_url"], "alice"))
    assert upstream.counters.authorize_requests[-1]["scope"] == "notes:read notes:write"
    await complete_authorization(store, state=params["state"], code=params["code"], iss=params.get("iss"))
    config, scopes = await config_and_scopes(store, config_id)
    assert (config.status, config.status_reason) == ("authorized", None)
    assert config.scopes == ["notes:read", "notes:write"] and scopes == ["notes:read", "notes:write"]
    assert (await credentials.headers_for(client, None))["Authorization"].startswith("Bearer ")

    # Nothing new to ask for: the call fails with the upstream's error and the config stays usable.
    assert await credentials.unauthorized(client, None, WIDER) is False
    config, _ = await config_and_scopes(store, config_id)
    assert config.status == "authorized"


async def test_a_challenge_without_a_scope_changes_nothing(store: Store, upstream_factory: UpstreamFactory) -> None:
    upstream = upstream_factory(token_auth_methods=["client_secret_basic"])
    config_id = await login(store, upstream, oauth=read_only(upstream))
    credentials = ServerTokenCredentials(UpstreamTokens(store, backoff_base=0.01))
    assert await credentials.unauthorized(spec(config_id), None, 'Bearer error="insufficient_scope"') is False
    config, _ = await config_and_scopes(store, config_id)
    assert (config.status, config.status_reason) == ("authorized", None)
