"""The "How to test" commands of the seed pull request (maximhq/bifrost #2598, "Per-User OAuth Flow"), run
verbatim with curl against a gateway on localhost:8080 with one per_user_oauth client configured.

If port 8080 is taken on this machine, the same commands run with the port replaced.
"""

from __future__ import annotations

import errno
import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oauth_server.helpers import gateway_config
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.servers import free_port

#: The seed pull request, in the steering folder laid beside the repository (and beside CI's clone).
SEED = Path(__file__).resolve().parents[2].parent / "shared" / "spec" / "seed-pr-2598.txt"
HOW_TO_TEST = """\
# 1. Configure an MCP client with per_user_oauth via Web UI
# 2. Test MCP client connection (Claude Code, Cursor)
curl -X POST http://localhost:8080/mcp \\
-H "Content-Type: application/json" \\
-d '{"method": "tools/list"}'
# Should return 401 with WWW-Authenticate header
# 3. Test OAuth discovery
curl http://localhost:8080/.well-known/oauth-protected-resource
curl http://localhost:8080/.well-known/oauth-authorization-server
# 4. Test dynamic client registration
curl -X POST http://localhost:8080/api/oauth/per-user/register \\
-H "Content-Type: application/json" \\
-d '{"client_name":"Test","redirect_uris":["http://localhost:3000/callback"]}'
"""

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def commands() -> list[str]:
    """The curl commands of the block, continuation lines joined."""
    joined = HOW_TO_TEST.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.startswith("curl ")]


def test_commands_are_the_seeds() -> None:
    if not SEED.exists():
        pytest.skip(f"{SEED} is not on this machine")
    assert HOW_TO_TEST in SEED.read_text()
    assert len(commands()) == 4


def port_free(port: int) -> bool:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    continue  # no IPv6 loopback here
                return False
    return True


@pytest.fixture(scope="module")
def seed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    port = 8080 if port_free(8080) else free_port()
    running = start_gateway(tmp_path_factory.mktemp("seed"), config=gateway_config(), port=port)
    yield running
    running.stop()


def run(command: str, gateway: RunningGateway, *extra: str) -> str:
    port = gateway.url.rsplit(":", 1)[1]
    if port != "8080":
        command = command.replace("localhost:8080", f"localhost:{port}")
    completed = subprocess.run(
        ["bash", "-c", " ".join([command, *extra])], capture_output=True, text=True, timeout=20, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def split_response(raw: str) -> tuple[int, dict[str, str], str]:
    head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
    status_line, *header_lines = head.splitlines()
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def test_mcp_without_credentials_returns_401_with_www_authenticate(seed_gateway: RunningGateway) -> None:
    command = commands()[0]
    assert json.loads(run(command, seed_gateway))["error"]["message"] == "oauth authentication required for mcp access"
    status, headers, _ = split_response(run(command, seed_gateway, "-s", "-i"))
    assert status == 401
    assert headers["www-authenticate"] == (
        f'Bearer resource_metadata="{seed_gateway.url}/.well-known/oauth-protected-resource/mcp", '
        'scope="mcp:read mcp:write"'
    )


def test_discovery_documents(seed_gateway: RunningGateway) -> None:
    resource = json.loads(run(commands()[1], seed_gateway))
    assert resource["resource"] == f"{seed_gateway.url}/mcp"
    assert resource["authorization_servers"] == [seed_gateway.url]
    server = json.loads(run(commands()[2], seed_gateway))
    assert server["issuer"] == seed_gateway.url
    assert server["registration_endpoint"] == f"{seed_gateway.url}/api/oauth/per-user/register"
    assert server["code_challenge_methods_supported"] == ["S256"]


def test_dynamic_client_registration(seed_gateway: RunningGateway) -> None:
    status, _, body = split_response(run(commands()[3], seed_gateway, "-s", "-i"))
    assert status == 201
    registered = json.loads(body)
    assert registered["client_name"] == "Test"
    assert registered["redirect_uris"] == ["http://localhost:3000/callback"]
    assert registered["token_endpoint_auth_method"] == "none"
    assert registered["client_id"]
