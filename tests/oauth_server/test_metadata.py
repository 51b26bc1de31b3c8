"""Discovery: RFC 9728 protected resource metadata (both paths), RFC 8414 metadata, and the availability gate."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.gateway import RunningGateway, start_gateway


def test_protected_resource_metadata_at_both_paths(gateway: RunningGateway) -> None:
    expected = {
        "resource": f"{gateway.url}/mcp",
        "authorization_servers": [gateway.url],
        "scopes_supported": ["mcp:read", "mcp:write"],
        "bearer_methods_supported": ["header"],
    }
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        response = httpx.get(gateway.url + path, trust_env=False)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "application/json"
        assert response.json() == expected


def test_authorization_server_metadata_advertises_what_is_implemented(gateway: RunningGateway) -> None:
    response = httpx.get(f"{gateway.url}/.well-known/oauth-authorization-server", trust_env=False)
    assert response.status_code == 200
    base = gateway.url
    assert response.json() == {
        "issuer": base,
        "authorization_endpoint": f"{base}/api/oauth/per-user/authorize",
        "token_endpoint": f"{base}/api/oauth/per-user/token",
        "registration_endpoint": f"{base}/api/oauth/per-user/register",
        "revocation_endpoint": f"{base}/api/oauth/per-user/revoke",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["mcp:read", "mcp:write"],
        "authorization_response_iss_parameter_supported": True,
        "client_id_metadata_document_supported": True,
    }
    assert not base.endswith("/")


def test_metadata_allows_browser_clients(gateway: RunningGateway) -> None:
    preflight = httpx.options(f"{gateway.url}/.well-known/oauth-authorization-server", trust_env=False)
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    response = httpx.get(f"{gateway.url}/.well-known/oauth-protected-resource", trust_env=False)
    assert response.headers["access-control-allow-origin"] == "*"


def test_public_url_not_host_header(tmp_path: Path) -> None:
    """W15: the documents use the configured public URL whatever Host the request carries."""
    from tests.oauth_server.helpers import gateway_config

    running = start_gateway(tmp_path, config=gateway_config(), public_url="https://gw.example.com/")
    try:
        response = httpx.get(
            f"{running.url}/.well-known/oauth-authorization-server", headers={"Host": "evil.example"}, trust_env=False
        )
        assert response.json()["issuer"] == "https://gw.example.com"
        prm = httpx.get(f"{running.url}/.well-known/oauth-protected-resource/mcp", trust_env=False).json()
        assert prm["resource"] == "https://gw.example.com/mcp"
        challenge = httpx.post(f"{running.url}/mcp", json={"method": "tools/list"}, trust_env=False)
        assert (
            'resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource/mcp"'
            in (challenge.headers["www-authenticate"])
        )
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/.well-known/oauth-protected-resource"),
        ("GET", "/.well-known/oauth-protected-resource/mcp"),
        ("GET", "/.well-known/oauth-authorization-server"),
        ("POST", "/api/oauth/per-user/register"),
        ("GET", "/api/oauth/per-user/authorize"),
        ("POST", "/api/oauth/per-user/token"),
        ("POST", "/api/oauth/per-user/revoke"),
    ],
)
def test_not_found_without_a_per_user_client(no_oauth_gateway: RunningGateway, method: str, path: str) -> None:
    response = httpx.request(method, no_oauth_gateway.url + path, trust_env=False)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "Not found"


def test_mcp_needs_no_oauth_without_a_per_user_client(no_oauth_gateway: RunningGateway) -> None:
    response = httpx.post(
        f"{no_oauth_gateway.url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"accept": "application/json, text/event-stream", "authorization": "Bearer not-one-of-ours"},
        trust_env=False,
    )
    assert response.status_code != 401  # the MCP server answers (no session yet), not the authorization layer
    assert "www-authenticate" not in response.headers


@pytest.fixture(scope="module")
def no_oauth_gateway(tmp_path_factory: pytest.TempPathFactory) -> object:
    running = start_gateway(tmp_path_factory.mktemp("plain"), config={})
    yield running
    running.stop()
