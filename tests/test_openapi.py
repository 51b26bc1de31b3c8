"""/openapi.json documents the whole HTTP surface, the raw-ASGI routes included."""

from __future__ import annotations

from pathlib import Path

from tests.support.gateway import start_gateway

EXPECTED = {
    "/v1/chat/completions": {"post"},
    "/v1/embeddings": {"post"},
    "/v1/models": {"get"},
    "/anthropic/v1/messages": {"post"},
    "/v1/mcp/tool/execute": {"post"},
    "/mcp": {"get", "post", "delete"},
    "/api/mcp/clients": {"get"},
    "/api/mcp/client": {"post"},
    "/api/mcp/client/{client_id}": {"get", "put", "delete"},
    "/api/mcp/client/{client_id}/reconnect": {"post"},
    "/api/mcp/client/{oauth_config_id}/complete-oauth": {"post"},
    "/api/oauth/callback": {"get"},
    "/api/oauth/config/{oauth_config_id}/status": {"get"},
    "/api/oauth/config/{oauth_config_id}": {"delete"},
    "/.well-known/oauth-protected-resource": {"get"},
    "/.well-known/oauth-protected-resource/mcp": {"get"},
    "/.well-known/oauth-authorization-server": {"get"},
    "/api/oauth/per-user/register": {"post"},
    "/api/oauth/per-user/authorize": {"get"},
    "/api/oauth/per-user/token": {"post"},
    "/api/oauth/per-user/revoke": {"post"},
    "/oauth/consent": {"get"},
    "/oauth/consent/mcps": {"get"},
    "/api/oauth/per-user/consent/vk": {"post"},
    "/api/oauth/per-user/consent/user-id": {"post"},
    "/api/oauth/per-user/consent/skip": {"post"},
    "/api/oauth/per-user/consent/submit": {"post"},
    "/oauth/connect/{handoff_id}": {"get", "post"},
    "/api/oauth/per-user/grants": {"get"},
    "/api/oauth/per-user/grants/{grant_id}": {"delete"},
    "/oauth/connections": {"get"},
    "/api/providers": {"get", "post"},
    "/api/governance/virtual-keys": {"get", "post"},
    "/api/config": {"get", "put"},
    "/api/logs": {"get"},
    "/api/logs/{log_id}": {"get"},
    "/health": {"get"},
    "/metrics": {"get"},
}


def test_every_endpoint_is_documented(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path / "app")
    try:
        with gateway.client() as http:
            paths = http.get("/openapi.json").json()["paths"]
            assert http.get("/docs").status_code == 200
    finally:
        gateway.stop()
    missing = {
        f"{method.upper()} {path}"
        for path, methods in EXPECTED.items()
        for method in methods
        if method not in paths.get(path, {})
    }
    assert not missing, sorted(missing)
