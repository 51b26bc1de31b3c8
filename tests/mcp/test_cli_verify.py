"""``heimdall mcp verify NAME`` against a running gateway and a real OAuth-protected upstream."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import ADMIN_TOKEN, RunningGateway, start_gateway
from tests.support.oauth_mcp_upstream import OAuthMCPUpstream, start_oauth_mcp_upstream

HEIMDALL = str(Path(sys.executable).parent / "heimdall")


@pytest.fixture
def upstream() -> Iterator[OAuthMCPUpstream]:
    server = start_oauth_mcp_upstream()
    yield server
    server.stop()


def approve_upstream_login(authorize_url: str, user: str) -> str:
    """The admin approves at the upstream; returns where the upstream sends the browser back to."""
    with httpx.Client(trust_env=False, timeout=10) as browser:
        first = browser.get(authorize_url)
        assert first.status_code == 302, first.text
        second = browser.get(first.headers["location"] + f"&user={user}")
        assert second.status_code == 302, second.text
        return str(second.headers["location"])


def run_verify(gateway: RunningGateway, name: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HEIMDALL_ADMIN_TOKEN": ADMIN_TOKEN}
    return subprocess.Popen(
        [HEIMDALL, "mcp", "verify", name, "--url", gateway.url, "--timeout", "20", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_url(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.strip().startswith("http"):
            return line.strip()
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"no URL printed; stderr: {process.stderr.read() if process.stderr else ''}")


def client_view(gateway: RunningGateway, name: str) -> dict[str, Any]:
    with gateway.admin() as admin:
        clients = admin.get("/api/mcp/clients").json()["clients"]
    return next(c for c in clients if c["config"]["name"] == name)


@pytest.mark.parametrize("auth_type", ["per_user_oauth", "oauth"])
def test_verify_completes_a_server_declared_in_config(
    tmp_path: Path, upstream: OAuthMCPUpstream, auth_type: str
) -> None:
    config = {
        "mcp": {
            "client_configs": [
                {
                    "name": "notes",
                    "connection_type": "http",
                    "connection_string": upstream.mcp_url,
                    "auth_type": auth_type,
                    "oauth_config": {},
                }
            ]
        }
    }
    gateway = start_gateway(tmp_path / "app", config=config)
    try:
        assert client_view(gateway, "notes")["state"] == "pending_verification"
        process = run_verify(gateway, "notes")
        try:
            back = approve_upstream_login(wait_for_url(process), "admin")
            with httpx.Client(trust_env=False, timeout=10) as browser:
                assert browser.get(back).status_code == 200
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, err
        view = client_view(gateway, "notes")
        if auth_type == "per_user_oauth":
            assert "tools discovered" in out
            assert view["state"] == "per_user"
        else:
            # Server-level OAuth: every caller uses the admin's login.
            deadline = time.monotonic() + 10
            while client_view(gateway, "notes")["state"] != "connected":
                assert time.monotonic() < deadline, client_view(gateway, "notes")
                time.sleep(0.05)
            call = {"id": "c1", "type": "function", "function": {"name": "notes-whoami", "arguments": "{}"}}
            with gateway.client() as http:
                executed = http.post("/v1/mcp/tool/execute", json=call)
            assert executed.status_code == 200, executed.text
            assert executed.json()["content"] == "admin"
        assert "whoami" in {tool["name"] for tool in client_view(gateway, "notes")["tools"]}
    finally:
        gateway.stop()


def test_verify_reports_unknown_servers_and_missing_tokens(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path / "app")
    try:
        process = run_verify(gateway, "nope")
        _, err = process.communicate(timeout=30)
        assert process.returncode == 1
        assert "no MCP server named 'nope'" in err
        no_token = subprocess.run(
            [HEIMDALL, "mcp", "verify", "x", "--url", gateway.url],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "HEIMDALL_ADMIN_TOKEN"},
            timeout=30,
        )
        assert no_token.returncode == 2 and "admin token is required" in no_token.stderr
    finally:
        gateway.stop()
