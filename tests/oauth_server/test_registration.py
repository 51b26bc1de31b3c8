"""RFC 7591 dynamic client registration: what is accepted, what is refused, and the response shape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.gateway import RunningGateway

REGISTER = "/api/oauth/per-user/register"


def register(gateway: RunningGateway, body: Any = None, *, content: bytes | None = None) -> httpx.Response:
    if content is not None:
        return httpx.post(
            gateway.url + REGISTER, content=content, headers={"content-type": "application/json"}, trust_env=False
        )
    return httpx.post(gateway.url + REGISTER, json=body, trust_env=False)


def assert_oauth_error(response: httpx.Response, error: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error, body
    assert body["error_description"]


def test_register_returns_a_public_client(gateway: RunningGateway) -> None:
    response = register(gateway, {"client_name": "Claude Code", "redirect_uris": ["http://localhost:54321/callback"]})
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {
        "client_id",
        "client_id_issued_at",
        "client_name",
        "redirect_uris",
        "grant_types",
        "response_types",
        "token_endpoint_auth_method",
    }
    assert body["client_name"] == "Claude Code"
    assert body["redirect_uris"] == ["http://localhost:54321/callback"]
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["response_types"] == ["code"]
    assert body["token_endpoint_auth_method"] == "none"
    assert isinstance(body["client_id_issued_at"], int) and body["client_id_issued_at"] > 1_700_000_000
    assert "client_secret" not in body


def test_registering_twice_gives_two_clients(gateway: RunningGateway) -> None:
    body = {"client_name": "Twice", "redirect_uris": ["https://app.example/cb"]}
    first, second = register(gateway, body).json(), register(gateway, body).json()
    assert first["client_id"] != second["client_id"]


def test_requested_secret_methods_become_public(gateway: RunningGateway) -> None:
    response = register(
        gateway,
        {
            "redirect_uris": ["https://app.example/cb"],
            "token_endpoint_auth_method": "client_secret_post",
            "scope": "mcp:read openid",
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["token_endpoint_auth_method"] == "none"
    assert body["scope"] == "mcp:read"  # RFC 7591 §2: unknown scopes replaced
    assert "client_name" not in body


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/callback",
        "http://127.0.0.1:8123/cb",
        "http://[::1]:8123/cb",
        "http://localhost/cb",
        "https://app.example/cb?tenant=1",
    ],
)
def test_https_and_loopback_redirects_are_accepted(gateway: RunningGateway, uri: str) -> None:
    assert register(gateway, {"redirect_uris": [uri]}).status_code == 201


@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example/callback",  # plain http, not loopback
        "http://192.168.1.10/cb",
        "https://app.example/cb#fragment",
        "com.example.app:/callback",  # private-use scheme
        "javascript:alert(1)",
        "/relative/callback",
        "https://user:pass@app.example/cb",
        "https://app.example/cb with space",
        "https://app.example:99999/cb",
    ],
)
def test_bad_redirect_uris_are_refused(gateway: RunningGateway, uri: str) -> None:
    assert_oauth_error(register(gateway, {"redirect_uris": [uri]}), "invalid_redirect_uri")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "invalid_redirect_uri"),
        ({"redirect_uris": []}, "invalid_redirect_uri"),
        ({"redirect_uris": "https://app.example/cb"}, "invalid_redirect_uri"),
        ({"redirect_uris": [f"https://app.example/{i}" for i in range(11)]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://app.example/" + "a" * 2100]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://app.example/cb"], "client_name": "n" * 256}, "invalid_client_metadata"),
        ({"redirect_uris": ["https://app.example/cb"], "client_name": 7}, "invalid_client_metadata"),
        (
            {"redirect_uris": ["https://app.example/cb"], "grant_types": ["client_credentials"]},
            "invalid_client_metadata",
        ),
        ({"redirect_uris": ["https://app.example/cb"], "grant_types": ["refresh_token"]}, "invalid_client_metadata"),
        ({"redirect_uris": ["https://app.example/cb"], "response_types": ["token"]}, "invalid_client_metadata"),
        ({"redirect_uris": ["https://app.example/cb"], "client_uri": "http://app.example"}, "invalid_client_metadata"),
        (["not", "an", "object"], "invalid_client_metadata"),
    ],
)
def test_invalid_metadata_is_refused(gateway: RunningGateway, body: Any, error: str) -> None:
    assert_oauth_error(register(gateway, body), error)


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"\xff\xfe\x00", b'{"redirect_uris": ["https://a.example/\\u0000"]}'],
)
def test_malformed_bodies_are_refused(gateway: RunningGateway, content: bytes) -> None:
    response = register(gateway, content=content)
    assert response.status_code == 400
    assert response.json()["error"] in ("invalid_client_metadata", "invalid_redirect_uri")


def test_oversized_registration_is_refused(gateway: RunningGateway) -> None:
    body = {"redirect_uris": ["https://app.example/cb"], "client_name": "x", "padding": "p" * 20_000}
    assert_oauth_error(register(gateway, body), "invalid_client_metadata")
    # A body streamed without Content-Length is cut off as well.
    chunks = iter([b'{"redirect_uris": ["https://app.example/cb"], "padding": "', b"p" * 20_000, b'"}'])
    response = httpx.post(
        gateway.url + REGISTER, content=chunks, headers={"content-type": "application/json"}, trust_env=False
    )
    assert_oauth_error(response, "invalid_client_metadata")
