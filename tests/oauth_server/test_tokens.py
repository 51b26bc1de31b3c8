"""The token and revocation endpoints on SQLite and PostgreSQL: code exchange (single use, client, exact
redirect, PKCE), refresh rotation with reuse detection, RFC 7009 revocation, and their effect on /mcp."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from heimdall.oauth.upstream.records import utcnow
from heimdall.store.per_user_models import ASCodeRow, ASGrantRow, ASTokenRow
from tests.oauth_server.helpers import ASClient, gateway_config, open_store
from tests.support.gateway import RunningGateway

GatewayFactory = Callable[..., RunningGateway]


@pytest.fixture
def gw(db_url: str, gateway_factory: GatewayFactory) -> RunningGateway:
    running = gateway_factory(gateway_config(), db_url=db_url)
    running.db_url = db_url  # type: ignore[attr-defined]
    return running


@pytest.fixture
def client(gw: RunningGateway) -> Iterator[ASClient]:
    with ASClient(gw.url) as as_client:
        yield as_client


def assert_grant_error(response: httpx.Response, error: str, text: str = "") -> None:
    assert response.status_code == 400, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error, body
    assert text in body["error_description"]


def works_on_mcp(client: ASClient, token: str) -> bool:
    response = client.mcp(token, "initialize")
    if response.status_code == 401:
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        return False
    assert response.status_code == 200, response.text
    return True


async def test_code_exchange_issues_bound_tokens(client: ASClient, gw: RunningGateway) -> None:
    client_id = client.register()
    code, started = client.code_for(client_id)
    response = client.exchange(code, started.verifier, client_id, resource=f"{gw.url}/mcp")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["token_type"] == "Bearer"
    assert 3500 <= body["expires_in"] <= 3600
    assert body["scope"] == "mcp:read mcp:write"
    assert body["access_token"] != body["refresh_token"]
    assert works_on_mcp(client, body["access_token"])
    assert not works_on_mcp(client, body["refresh_token"])  # a refresh token is not an access token
    store = open_store(gw.app_dir, gw.db_url)  # type: ignore[attr-defined]
    try:
        async with store.read() as session:
            tokens = (await session.scalars(select(ASTokenRow))).all()
            codes = (await session.scalars(select(ASCodeRow))).all()
        stored = {t.token_hash for t in tokens} | {c.code_hash for c in codes}
        for secret in (body["access_token"], body["refresh_token"], code):
            assert secret not in stored  # only keyed hashes are stored
            assert store.box.lookup_hash(secret) in stored
        assert {t.audience for t in tokens} == {f"{gw.url}/mcp"}
    finally:
        await store.engine.dispose()


def test_a_reused_code_revokes_its_grant(client: ASClient) -> None:
    client_id = client.register()
    code, started = client.code_for(client_id)
    first = client.exchange(code, started.verifier, client_id)
    assert first.status_code == 200
    tokens = first.json()
    assert works_on_mcp(client, tokens["access_token"])
    again = client.exchange(code, started.verifier, client_id)
    assert_grant_error(again, "invalid_grant", "Invalid or already used authorization code")
    assert not works_on_mcp(client, tokens["access_token"])
    assert_grant_error(client.refresh(tokens["refresh_token"], client_id), "invalid_grant")


def test_code_checks_client_redirect_and_pkce(client: ASClient) -> None:
    client_id, other_id = client.register(), client.register()
    code, started = client.code_for(client_id)
    assert_grant_error(client.exchange(code, started.verifier, other_id), "invalid_grant", "client_id mismatch")
    code, started = client.code_for(client_id)
    assert_grant_error(
        client.exchange(code, started.verifier, client_id, redirect_uri="http://127.0.0.1:53682/callback/"),
        "invalid_grant",
        "redirect_uri mismatch",
    )
    code, started = client.code_for(client_id)
    wrong_verifier = "W" * 64
    assert_grant_error(client.exchange(code, wrong_verifier, client_id), "invalid_grant", "PKCE verification failed")
    # each failure burnt its code: single use even when the exchange failed
    assert_grant_error(client.exchange(code, started.verifier, client_id), "invalid_grant", "already used")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"grant_type": "password", "username": "a", "password": "b"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({}, "invalid_request"),
        ({"grant_type": "authorization_code"}, "invalid_request"),
        ({"grant_type": "authorization_code", "code": "c", "code_verifier": "v" * 43}, "invalid_request"),
        (
            {
                "grant_type": "authorization_code",
                "code": "c",
                "code_verifier": "short",
                "client_id": "x",
                "redirect_uri": "http://127.0.0.1/cb",
            },
            "invalid_request",
        ),
        (
            {
                "grant_type": "authorization_code",
                "code": "c",
                "code_verifier": "v" * 43,
                "client_id": "x",
                "redirect_uri": "http://127.0.0.1/cb",
            },
            "invalid_grant",
        ),
        (
            {
                "grant_type": "authorization_code",
                "code": "c",
                "code_verifier": "v" * 43,
                "client_id": "x",
                "redirect_uri": "http://127.0.0.1/cb",
                "resource": "https://elsewhere.example/mcp",
            },
            "invalid_target",
        ),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "nope", "client_id": "x"}, "invalid_grant"),
        ({"grant_type": "refresh_token", "refresh_token": "nope\x00", "client_id": "x"}, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "n" * 5000, "client_id": "x"}, "invalid_grant"),
    ],
)
def test_bad_token_requests(client: ASClient, data: dict[str, str], error: str) -> None:
    response = client.http.post("/api/oauth/per-user/token", data=data)
    assert_grant_error(response, error)


def test_token_request_shape(client: ASClient) -> None:
    as_json = client.http.post("/api/oauth/per-user/token", json={"grant_type": "refresh_token"})
    assert_grant_error(as_json, "invalid_request", "x-www-form-urlencoded")
    twice = client.http.post(
        "/api/oauth/per-user/token",
        content="grant_type=refresh_token&grant_type=authorization_code",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_grant_error(twice, "invalid_request", "more than once")
    not_utf8 = client.http.post(
        "/api/oauth/per-user/token", content=b"\xff\xfe", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert_grant_error(not_utf8, "invalid_request")
    huge = client.http.post("/api/oauth/per-user/token", data={"grant_type": "refresh_token", "x": "y" * 20_000})
    assert_grant_error(huge, "invalid_request")


async def test_expired_code(client: ASClient, gw: RunningGateway) -> None:
    client_id = client.register()
    code, started = client.code_for(client_id)
    store = open_store(gw.app_dir, gw.db_url)  # type: ignore[attr-defined]
    try:
        async with store.transaction() as session:
            await session.execute(
                update(ASCodeRow)
                .where(ASCodeRow.code_hash == store.box.lookup_hash(code))
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
    finally:
        await store.engine.dispose()
    assert_grant_error(
        client.exchange(code, started.verifier, client_id), "invalid_grant", "Authorization code expired"
    )


def test_refresh_rotates_and_reuse_revokes_the_grant(client: ASClient) -> None:
    first = client.tokens()
    client_id = first["client_id"]
    rotated = client.refresh(first["refresh_token"], client_id)
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store"
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert works_on_mcp(client, first["access_token"])  # older access tokens stay valid until they expire
    assert works_on_mcp(client, second["access_token"])
    third = client.refresh(second["refresh_token"], client_id).json()
    # Replaying a used refresh token revokes the whole grant and every token it produced.
    replay = client.refresh(first["refresh_token"], client_id)
    assert_grant_error(replay, "invalid_grant", "reuse")
    for access in (first["access_token"], second["access_token"], third["access_token"]):
        assert not works_on_mcp(client, access)
    assert_grant_error(client.refresh(third["refresh_token"], client_id), "invalid_grant")


def test_refresh_checks_client_and_scope(client: ASClient) -> None:
    tokens = client.tokens()
    other = client.register()
    assert_grant_error(client.refresh(tokens["refresh_token"], other), "invalid_grant", "client_id mismatch")
    wider = client.refresh(tokens["refresh_token"], tokens["client_id"], scope="mcp:read admin")
    assert_grant_error(wider, "invalid_scope")
    narrower = client.refresh(tokens["refresh_token"], tokens["client_id"], scope="mcp:read")
    assert narrower.status_code == 200 and narrower.json()["scope"] == "mcp:read"
    # the narrowed access token still rotates back to the grant's full scope later
    full = client.refresh(narrower.json()["refresh_token"], tokens["client_id"])
    assert full.json()["scope"] == "mcp:read mcp:write"


async def test_refresh_tokens_have_an_absolute_lifetime(client: ASClient, gw: RunningGateway) -> None:
    tokens = client.tokens()
    store = open_store(gw.app_dir, gw.db_url)  # type: ignore[attr-defined]
    try:
        async with store.transaction() as session:
            await session.execute(
                update(ASTokenRow)
                .where(ASTokenRow.token_hash == store.box.lookup_hash(tokens["refresh_token"]))
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
    finally:
        await store.engine.dispose()
    assert_grant_error(client.refresh(tokens["refresh_token"], tokens["client_id"]), "invalid_grant", "expired")


async def test_revocation(client: ASClient, gw: RunningGateway) -> None:
    tokens = client.tokens()
    assert works_on_mcp(client, tokens["access_token"])  # now cached by the gateway
    revoked = client.revoke(tokens["access_token"], token_type_hint="access_token")
    assert revoked.status_code == 200 and revoked.headers["cache-control"] == "no-store"
    assert not works_on_mcp(client, tokens["access_token"])  # at once, despite the cache
    assert client.refresh(tokens["refresh_token"], tokens["client_id"]).status_code == 200  # the grant lives

    more = client.tokens()
    assert client.revoke(more["refresh_token"], client_id="someone-else").status_code == 200
    assert works_on_mcp(client, more["access_token"])  # another client's request changed nothing
    assert client.revoke(more["refresh_token"]).status_code == 200
    assert not works_on_mcp(client, more["access_token"])  # a refresh token takes the whole grant
    store = open_store(gw.app_dir, gw.db_url)  # type: ignore[attr-defined]
    try:
        async with store.read() as session:
            reasons = {g.revoked_reason for g in (await session.scalars(select(ASGrantRow))).all()}
        assert "revoked by the client" in reasons
    finally:
        await store.engine.dispose()

    for unknown in ("never-issued", "x" * 600):
        assert client.revoke(unknown).status_code == 200
    missing: Any = client.http.post("/api/oauth/per-user/revoke", data={})
    assert_grant_error(missing, "invalid_request")


def test_concurrent_use_of_one_code_or_refresh_token(client: ASClient, gw: RunningGateway) -> None:
    """The claim is atomic: one request wins; the others are replays, which revoke the grant."""
    client_id = client.register()
    code, started = client.code_for(client_id)

    def exchange(_: int) -> int:
        with ASClient(gw.url) as other:
            return other.exchange(code, started.verifier, client_id).status_code

    with ThreadPoolExecutor(max_workers=3) as pool:
        assert sorted(pool.map(exchange, range(3))) == [200, 400, 400]

    tokens = client.tokens()

    def refresh(_: int) -> int:
        with ASClient(gw.url) as other:
            return other.refresh(tokens["refresh_token"], tokens["client_id"]).status_code

    with ThreadPoolExecutor(max_workers=3) as pool:
        assert sorted(pool.map(refresh, range(3))) == [200, 400, 400]
    assert not works_on_mcp(client, tokens["access_token"])  # the replays revoked the grant
