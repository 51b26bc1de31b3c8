"""The authorization-code flow end to end: start, upstream login, Heimdall's /api/oauth/callback, status, revoke."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from heimdall.mcp.config import OAuthSettings
from heimdall.oauth.upstream import (
    AuthorizationFailed,
    OAuthSetupError,
    PendingLogin,
    UpstreamTokens,
    begin_authorization,
    complete_authorization,
    discard_token,
    records,
    start_oauth_for_client,
    take_pending_client,
)
from heimdall.oauth.upstream.pkce import s256_challenge
from heimdall.store.mcp_models import OAuthConfigRow, OAuthTokenRow
from heimdall.store.repos import Store
from tests.oauth.conftest import PUBLIC_URL, call_tool, dump_database, follow_login, login, query_of
from tests.support.gateway import RunningGateway
from tests.support.oauth_mcp_upstream import OAuthMCPUpstream
from tests.support.servers import free_port

CALLBACK = f"{PUBLIC_URL}/api/oauth/callback"
GatewayFactory = Callable[..., RunningGateway]


@pytest.fixture
def gateway(store: Store, gateway_factory: GatewayFactory, db_url: str, encryption_key: str) -> RunningGateway:
    """Heimdall on the test's database and key, with a public URL that is not its listen address (W15)."""
    return gateway_factory(db_url=db_url, public_url=PUBLIC_URL, encryption_key=encryption_key)


async def through_gateway(gateway: RunningGateway, location: str) -> httpx.Response:
    """Deliver the upstream's redirect to the gateway, as the proxy behind PUBLIC_URL would."""
    assert location.startswith(CALLBACK + "?"), location
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        return await client.get(gateway.url + location[len(PUBLIC_URL) :])


async def admin_request(gateway: RunningGateway, method: str, path: str, *, auth: bool = True) -> httpx.Response:
    headers = {"Authorization": f"Bearer {gateway.admin_token}"} if auth else {}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, trust_env=False, timeout=30) as client:
        return await client.request(method, path)


async def config_row(store: Store, oauth_config_id: str) -> OAuthConfigRow:
    async with store.read() as session:
        row = await session.get(OAuthConfigRow, oauth_config_id)
    assert row is not None
    return row


async def start(store: Store, upstream: OAuthMCPUpstream, **kwargs: Any) -> PendingLogin:
    oauth = kwargs.pop("oauth", OAuthSettings())
    return await start_oauth_for_client(store, base_url=PUBLIC_URL, server_url=upstream.mcp_url, oauth=oauth, **kwargs)


# --- the whole flow -----------------------------------------------------------------------------


async def test_server_level_login_through_the_gateway_callback(
    store: Store, gateway: RunningGateway, upstream: OAuthMCPUpstream
) -> None:
    pending_client = {"name": "notes", "connection_type": "http", "connection_string": upstream.mcp_url}
    pending = await start(store, upstream, pending_client=pending_client)
    assert set(pending) == {"oauth_config_id", "authorize_url", "expires_at"}
    config_id = pending["oauth_config_id"]

    answer = await through_gateway(gateway, await follow_login(pending["authorize_url"], "alice"))
    assert answer.status_code == 200
    assert "OAuth authorization successful! You can close this window." in answer.text
    assert 'postMessage({"type": "oauth_success"}, location.origin)' in answer.text
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"

    status = await admin_request(gateway, "GET", f"/api/oauth/config/{config_id}/status")
    assert status.status_code == 200
    body = status.json()
    assert body["id"] == config_id and body["status"] == "authorized"
    assert body["token_id"] and body["token_expires_at"] and body["token_scopes"] == ["notes:read", "notes:write"]
    assert body["created_at"] and body["expires_at"]

    # One authorize and one token request, tied together by PKCE, the pinned redirect URI and the resource.
    (authorize,) = upstream.counters.authorize_requests
    (exchange,) = upstream.counters.token_requests
    form = exchange["form"]
    assert authorize["code_challenge_method"] == "S256"
    assert authorize["code_challenge"] == s256_challenge(form["code_verifier"])
    assert len(form["code_verifier"]) == 128
    assert authorize["redirect_uri"] == form["redirect_uri"] == CALLBACK
    assert authorize["resource"] == form["resource"] == upstream.mcp_url
    assert authorize["scope"] == "notes:read notes:write"

    # The token works upstream, and no secret is stored in clear.
    token = await UpstreamTokens(store).access_token(config_id)
    assert await call_tool(upstream, token, "whoami") == "alice"
    dump = await dump_database(store)
    for secret in (*upstream.provider.live_tokens(), form["code_verifier"], authorize["state"], form["code"]):
        assert secret not in dump

    # complete-oauth (another helper's endpoint) gets the pending client back, once.
    async with store.transaction() as session:
        row, client = await take_pending_client(session, store.box, config_id)
        assert row.status == "authorized" and client == pending_client
    async with store.transaction() as session:
        assert (await take_pending_client(session, store.box, config_id))[1] is None


async def test_state_is_single_use(store: Store, gateway: RunningGateway, upstream: OAuthMCPUpstream) -> None:
    pending = await start(store, upstream)
    location = await follow_login(pending["authorize_url"])
    assert (await through_gateway(gateway, location)).status_code == 200
    replay = await through_gateway(gateway, location)
    assert replay.status_code == 400
    assert "Authorization Failed" in replay.text and "oauth_failed" in replay.text
    assert upstream.counters.code_exchanges == 1
    assert (await config_row(store, pending["oauth_config_id"])).status == "authorized"


async def test_expired_state_is_refused(store: Store, gateway: RunningGateway, upstream: OAuthMCPUpstream) -> None:
    pending = await start(store, upstream)
    location = await follow_login(pending["authorize_url"])
    async with store.transaction() as session:
        await session.execute(
            update(OAuthConfigRow)
            .where(OAuthConfigRow.id == pending["oauth_config_id"])
            .values(expires_at=records.utcnow() - timedelta(seconds=1))
        )
    answer = await through_gateway(gateway, location)
    assert answer.status_code == 400 and "expired" in answer.text
    assert upstream.counters.code_exchanges == 0
    assert (await config_row(store, pending["oauth_config_id"])).status == "expired"


async def test_forged_state_and_missing_parameters(
    store: Store, gateway: RunningGateway, upstream: OAuthMCPUpstream
) -> None:
    pending = await start(store, upstream)
    location = await follow_login(pending["authorize_url"])
    forged = location.replace(query_of(location)["state"], "forged-state-value")
    answer = await through_gateway(gateway, forged)
    assert answer.status_code == 400 and "Invalid or expired authorization state" in answer.text
    assert upstream.counters.code_exchanges == 0
    assert (await config_row(store, pending["oauth_config_id"])).status == "pending"

    missing = await through_gateway(gateway, f"{CALLBACK}?code=abc")
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == "Missing required parameters: state and code"
    assert missing.headers["x-frame-options"] == "DENY"


async def test_an_upstream_error_marks_the_login_failed(
    store: Store, gateway: RunningGateway, upstream: OAuthMCPUpstream
) -> None:
    pending = await start(store, upstream)
    answer = await through_gateway(gateway, await follow_login(pending["authorize_url"], deny=True))
    assert answer.status_code == 400
    assert "Authorization Failed" in answer.text and "access_denied" in answer.text
    assert '"type": "oauth_failed", "error": "access_denied"' in answer.text
    row = await config_row(store, pending["oauth_config_id"])
    assert row.status == "failed" and row.status_reason == "access_denied: the user said no"
    assert row.state_hash is None


async def test_callback_pages_escape_everything(gateway: RunningGateway) -> None:
    evil = "<script>alert(1)</script>"
    answer = await through_gateway(gateway, f"{CALLBACK}?error={evil}&error_description=%3Cb%3Ex%3C%2Fb%3E&state=s")
    assert answer.status_code == 400
    assert evil not in answer.text and "<b>x</b>" not in answer.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text
    assert "\\u003cscript\\u003e" in answer.text  # inside the postMessage payload


# --- variants of the flow -----------------------------------------------------------------------


async def test_authorize_url_keeps_its_own_query(
    store: Store, upstream_factory: Callable[..., OAuthMCPUpstream]
) -> None:
    upstream = upstream_factory(authorize_query="tenant=acme&prompt=consent")
    config_id = await login(store, upstream)
    (authorize,) = upstream.counters.authorize_requests
    assert authorize["tenant"] == "acme" and authorize["prompt"] == "consent"
    assert authorize["response_type"] == "code" and authorize["resource"] == upstream.mcp_url
    assert (await config_row(store, config_id)).status == "authorized"


async def test_client_secret_basic_when_the_server_requires_it(
    store: Store, upstream_factory: Callable[..., OAuthMCPUpstream]
) -> None:
    upstream = upstream_factory(require_client_secret_basic=True)
    config_id = await login(store, upstream)
    row = await config_row(store, config_id)
    assert row.token_endpoint_auth_method == "client_secret_basic"
    secret = records.client_secret(store.box, row)
    assert secret and secret not in (row.client_secret_encrypted or "")
    (exchange,) = upstream.counters.token_requests
    assert (exchange["authorization"] or "").startswith("Basic ")
    assert "client_secret" not in exchange["form"]


async def test_pre_registered_client_with_client_secret_post(
    store: Store, upstream_factory: Callable[..., OAuthMCPUpstream]
) -> None:
    upstream = upstream_factory(token_auth_methods=["client_secret_post"])
    client_id, secret = upstream.register_client(CALLBACK, auth_method="client_secret_post")
    oauth = OAuthSettings(client_id=client_id, client_secret=secret, scopes=["notes:read"])
    config_id = await login(store, upstream, oauth=oauth)
    row = await config_row(store, config_id)
    assert row.token_endpoint_auth_method == "client_secret_post"
    assert row.scopes == ["notes:read"] and row.client_id == client_id
    assert upstream.counters.registrations == []  # no DCR with a configured client_id
    (exchange,) = upstream.counters.token_requests
    assert exchange["form"]["client_secret"] == secret and exchange["authorization"] is None
    assert secret is not None and secret not in await dump_database(store)


async def test_configured_endpoints_without_a_server_url(store: Store, upstream: OAuthMCPUpstream) -> None:
    client_id, secret = upstream.register_client(CALLBACK, auth_method="client_secret_basic")
    oauth = OAuthSettings(
        client_id=client_id,
        client_secret=secret,
        authorize_url=f"{upstream.url}/authorize",
        token_url=f"{upstream.url}/token",
    )
    pending = await start_oauth_for_client(store, base_url=PUBLIC_URL, server_url=None, oauth=oauth)
    row = await config_row(store, pending["oauth_config_id"])
    assert row.token_endpoint_auth_method == "client_secret_basic"  # RFC 8414's default when nothing is known
    params = query_of(await follow_login(pending["authorize_url"]))
    await complete_authorization(store, state=params["state"], code=params["code"])
    (exchange,) = upstream.counters.token_requests
    assert (exchange["authorization"] or "").startswith("Basic ") and "client_secret" not in exchange["form"]
    assert "resource" not in upstream.counters.authorize_requests[0]  # no server URL, no resource indicator
    assert "scope" not in upstream.counters.authorize_requests[0]


async def test_form_encoded_token_responses(store: Store, upstream_factory: Callable[..., OAuthMCPUpstream]) -> None:
    upstream = upstream_factory(form_encoded_tokens=True)
    config_id = await login(store, upstream, user="bob")
    token = await UpstreamTokens(store).access_token(config_id)
    assert await call_tool(upstream, token, "whoami") == "bob"


async def test_a_refused_code_exchange_fails_the_login(store: Store, upstream: OAuthMCPUpstream) -> None:
    pending = await start(store, upstream)
    params = query_of(await follow_login(pending["authorize_url"]))
    with pytest.raises(AuthorizationFailed, match="invalid_grant") as failure:
        await complete_authorization(store, state=params["state"], code="not-the-code")
    assert failure.value.status_code == 502
    row = await config_row(store, pending["oauth_config_id"])
    assert row.status == "failed" and "invalid_grant" in (row.status_reason or "")


async def test_an_authorization_response_from_another_issuer_is_refused(
    store: Store, upstream: OAuthMCPUpstream
) -> None:
    pending = await start(store, upstream)
    params = query_of(await follow_login(pending["authorize_url"]))
    with pytest.raises(AuthorizationFailed, match="unexpected issuer"):
        await complete_authorization(store, state=params["state"], code=params["code"], iss="https://evil.example")
    assert upstream.counters.code_exchanges == 0
    assert (await config_row(store, pending["oauth_config_id"])).status == "failed"


async def test_start_explains_what_is_missing(store: Store, upstream: OAuthMCPUpstream) -> None:
    with pytest.raises(OAuthSetupError, match="Either client_id must be provided"):
        await start_oauth_for_client(store, base_url=PUBLIC_URL, server_url=None, oauth=OAuthSettings())
    with pytest.raises(OAuthSetupError, match="server_url is required for OAuth discovery"):
        await start_oauth_for_client(store, base_url=PUBLIC_URL, server_url=None, oauth=OAuthSettings(client_id="x"))
    # The configured token URL is another authorization server's: the discovered registration endpoint is not used.
    elsewhere = OAuthSettings(authorize_url=f"{upstream.url}/authorize", token_url=f"{upstream.url}/other-token")
    with pytest.raises(OAuthSetupError, match="client_id is required when the OAuth provider does not support"):
        await start_oauth_for_client(store, base_url=PUBLIC_URL, server_url=upstream.mcp_url, oauth=elsewhere)
    with pytest.raises(OAuthSetupError, match="OAuth discovery failed: .*ConnectError"):
        await start_oauth_for_client(
            store, base_url=PUBLIC_URL, server_url=f"http://127.0.0.1:{free_port()}/mcp", oauth=OAuthSettings()
        )


# --- status, revoke, discard --------------------------------------------------------------------


async def test_status_and_revoke_endpoints(store: Store, gateway: RunningGateway, upstream: OAuthMCPUpstream) -> None:
    assert (await admin_request(gateway, "GET", "/api/oauth/config/nope/status")).status_code == 404
    missing = await admin_request(gateway, "DELETE", "/api/oauth/config/nope")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "OAuth config not found"

    config_id = await login(store, upstream)
    assert (await admin_request(gateway, "GET", f"/api/oauth/config/{config_id}/status", auth=False)).status_code == 401
    assert (await admin_request(gateway, "DELETE", f"/api/oauth/config/{config_id}", auth=False)).status_code == 401
    assert upstream.provider.live_tokens()

    revoked = await admin_request(gateway, "DELETE", f"/api/oauth/config/{config_id}")
    assert revoked.status_code == 200 and revoked.json() == {"message": "OAuth token revoked successfully"}
    assert [r["token_type_hint"] for r in upstream.counters.revocations] == ["refresh_token", "access_token"]
    assert upstream.provider.live_tokens() == set()  # the whole grant is gone upstream

    status = (await admin_request(gateway, "GET", f"/api/oauth/config/{config_id}/status")).json()
    assert status["status"] == "revoked" and "token_id" not in status
    async with store.read() as session:
        assert (await session.scalars(select(OAuthTokenRow))).all() == []


async def test_discarding_the_verification_token_keeps_the_template(store: Store, upstream: OAuthMCPUpstream) -> None:
    config_id = await login(store, upstream, purpose="per_user")
    await discard_token(store, config_id)
    row = await config_row(store, config_id)
    assert row.purpose == "per_user" and row.status == "authorized" and row.token_id is None
    assert row.client_id and row.token_url and row.resource == upstream.mcp_url
    assert upstream.provider.live_tokens() == set()
    again = await begin_authorization(store, config_id, base_url=PUBLIC_URL)
    assert urlsplit(again["authorize_url"]).path == "/authorize"
    params = query_of(await follow_login(again["authorize_url"], "bob"))
    await complete_authorization(store, state=params["state"], code=params["code"])
    token = await UpstreamTokens(store).access_token(config_id)
    assert await call_tool(upstream, token, "whoami") == "bob"
