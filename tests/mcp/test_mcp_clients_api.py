"""``/api/mcp/clients`` and ``/api/mcp/client/...`` against a real gateway, store and upstream MCP servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from heimdall.store.engine import create_engine
from tests.support.gateway import RunningGateway
from tests.support.mcp_servers import UpstreamServer
from tests.support.servers import ServerThread

SECRET = "hdr-secret-71e0c2d9b5"
ENV_SECRET = "env-secret-5c3a9e1f04"
CLIENT_SECRET = "client-secret-2b8d6f0a"
DEAD_URL = "http://127.0.0.1:9/mcp"
NEEDS_CLIENT_ID = (
    "Either client_id must be provided, or server URL must be set for OAuth discovery and dynamic client registration"
)


@pytest.fixture
def gateway(db_url: str, gateway_factory: Any) -> RunningGateway:
    started: RunningGateway = gateway_factory(
        config={
            "governance": {
                "virtual_keys": [
                    {"id": "vk-a", "name": "team_a", "value": "sk-bf-team-a-000000000000001"},
                    {"id": "vk-b", "name": "team_b", "value": "sk-bf-team-b-000000000000002"},
                ]
            }
        },
        db_url=db_url,
    )
    return started


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer("http", api_keys={SECRET}) as server:
        yield server


def admin(gateway: RunningGateway) -> httpx.Client:
    return gateway.admin()


def error_paths(response: httpx.Response) -> list[str]:
    return [problem.split(":", 1)[0] for problem in response.json()["extra_fields"]["errors"]]


def clients(gateway: RunningGateway, **params: Any) -> dict[str, Any]:
    with admin(gateway) as api:
        response = api.get("/api/mcp/clients", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_state(gateway: RunningGateway, client_id: str, wanted: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with admin(gateway) as api:
        while True:
            body: dict[str, Any] = api.get(f"/api/mcp/client/{client_id}").json()
            if body.get("state") == wanted or time.monotonic() > deadline:
                assert body.get("state") == wanted, body
                return body
            time.sleep(0.1)


def stdio(name: str, **extra: Any) -> dict[str, Any]:
    # A command that cannot start: the client is stored and simply stays disconnected.
    return {
        "name": name,
        "connection_type": "stdio",
        "stdio_config": {"command": "/nonexistent/heimdall-test-server"},
        **extra,
    }


def stored_text(db_url: str) -> str:
    """All rows of the MCP and OAuth tables as text, read straight from the database."""

    async def dump() -> str:
        engine = create_engine(db_url)
        try:
            async with engine.connect() as conn:
                parts = []
                for table in ("mcp_clients", "oauth_configs", "oauth_tokens"):
                    parts += [repr(tuple(row)) for row in (await conn.execute(text(f"SELECT * FROM {table}"))).all()]
                return "\n".join(parts)
        finally:
            await engine.dispose()

    return asyncio.run(dump())


def database_files(db_url: str) -> bytes:
    if not db_url.startswith("sqlite"):
        return b""
    path = Path(db_url.split("///", 1)[1])
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


# --- create, read, update, delete ----------------------------------------------------------------


def test_headers_client_connects_and_lists_its_tools(gateway: RunningGateway, upstream: UpstreamServer) -> None:
    body = {
        "name": "notes",
        "connection_type": "http",
        "connection_string": upstream.url,
        "auth_type": "headers",
        "headers": {"X-Api-Key": SECRET},
        "tools_to_execute": ["*"],
        "tools_to_auto_execute": ["add"],
    }
    with admin(gateway) as api:
        created = api.post("/api/mcp/client", json=body)
    assert created.status_code == 200, created.text
    answer = created.json()
    assert answer["status"] == "success" and answer["message"] == "MCP client connected successfully"
    client = wait_state(gateway, answer["mcp_client_id"], "connected")
    assert client["config"]["headers"] == {"X-Api-Key": "<redacted>"}
    assert client["config"]["tools_to_auto_execute"] == ["add"]
    tools = {tool["name"]: tool for tool in client["tools"]}
    assert {"add", "echo", "whoami"} <= set(tools)
    assert client["tool_count"] == len(client["tools"])
    assert tools["add"]["parameters"]["properties"].keys() == {"a", "b"}
    assert any(r.headers.get("x-api-key") == SECRET for r in upstream.requests)


def test_crud_round_trip(gateway: RunningGateway) -> None:
    with admin(gateway) as api:
        created = api.post("/api/mcp/client", json=stdio("local", client_id="local-1", tools_to_execute=["a"]))
        assert created.status_code == 200, created.text
        assert created.json()["mcp_client_id"] == "local-1"
        one = api.get("/api/mcp/client/local-1").json()
        assert one["config"]["name"] == "local" and one["config"]["tools_to_execute"] == ["a"]
        assert one["state"] in ("connecting", "disconnected", "error")
        changed = api.put("/api/mcp/client/local-1", json={"name": "local2", "tools_to_execute": ["a", "b"]})
        assert changed.status_code == 200, changed.text
        assert changed.json()["config"]["name"] == "local2"
        assert changed.json()["config"]["tools_to_execute"] == ["a", "b"]
        assert api.delete("/api/mcp/client/local-1").json()["status"] == "success"
        missing = api.get("/api/mcp/client/local-1")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert clients(gateway)["total_count"] == 0


def test_admin_credential_is_required(gateway: RunningGateway) -> None:
    with gateway.client() as anonymous:
        assert anonymous.get("/api/mcp/clients").status_code == 401
        assert anonymous.post("/api/mcp/client", json={"name": "x y"}).status_code == 401


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (stdio("my notes"), "$.name"),
        (stdio("my-notes"), "$.name"),
        ({**stdio("n"), "connection_type": "websocket"}, "$.connection_type"),
        ({**stdio("n"), "auth_type": "basic"}, "$.auth_type"),
        ({"name": "n", "connection_type": "http"}, "$.connection_string"),
        ({"name": "n", "connection_type": "http", "connection_string": "ftp://x"}, "$.connection_string"),
        ({"name": "n", "connection_type": "stdio"}, "$.stdio_config"),
        ({"name": "n", "connection_type": "stdio", "stdio_config": {"args": []}}, "$.stdio_config.command"),
        (stdio("n", tools_to_execute=["a"], tools_to_auto_execute=["b"]), "$.tools_to_auto_execute"),
        (stdio("n", auth_type="headers"), "$.headers"),
        (stdio("n", tools_to_execute=["*", "a"]), "$.tools_to_execute"),
        (stdio("n", bogus=1), "$.bogus"),
        (stdio("n", client_id="has space"), "$.client_id"),
        ({"connection_type": "stdio"}, "$.name"),
    ],
)
def test_invalid_clients_are_refused_with_their_path(gateway: RunningGateway, body: dict[str, Any], path: str) -> None:
    with admin(gateway) as api:
        response = api.post("/api/mcp/client", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["is_bifrost_error"] is True
    assert path in error_paths(response), response.json()
    assert clients(gateway)["total_count"] == 0


def test_malformed_bodies_are_400(gateway: RunningGateway) -> None:
    with admin(gateway) as api:
        for content in (b"{", b"[1, 2]", b'"text"', b""):
            response = api.post("/api/mcp/client", content=content, headers={"content-type": "application/json"})
            assert response.status_code == 400, (content, response.text)
            assert response.json()["error"]["type"] == "invalid_request_error"
    assert clients(gateway)["total_count"] == 0


def test_per_user_oauth_needs_oauth_config(gateway: RunningGateway) -> None:
    body = {"name": "notion", "connection_type": "http", "connection_string": DEAD_URL, "auth_type": "per_user_oauth"}
    with admin(gateway) as api:
        response = api.post("/api/mcp/client", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "OAuth configuration is required when auth_type is 'per_user_oauth'"


def test_oauth_without_client_id_or_server_url(gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEIMDALL_TEST_UNSET_MCP_URL", raising=False)
    body = {
        "name": "notion",
        "connection_type": "http",
        "connection_string": "env.HEIMDALL_TEST_UNSET_MCP_URL",
        "auth_type": "per_user_oauth",
        "oauth_config": {"scopes": ["read"]},
    }
    with admin(gateway) as api:
        response = api.post("/api/mcp/client", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == NEEDS_CLIENT_ID


def test_duplicates_are_409(gateway: RunningGateway) -> None:
    with admin(gateway) as api:
        assert api.post("/api/mcp/client", json=stdio("dup", client_id="dup-1")).status_code == 200
        same_name = api.post("/api/mcp/client", json=stdio("dup"))
        same_id = api.post("/api/mcp/client", json=stdio("other", client_id="dup-1"))
        api.post("/api/mcp/client", json=stdio("second", client_id="dup-2"))
        rename = api.put("/api/mcp/client/dup-2", json={"name": "dup"})
    assert same_name.status_code == same_id.status_code == rename.status_code == 409
    assert same_name.json()["error"]["type"] == "conflict_error"
    assert sorted(c["config"]["name"] for c in clients(gateway)["clients"]) == ["dup", "second"]


# --- secrets -------------------------------------------------------------------------------------


def test_secrets_are_redacted_and_encrypted(gateway: RunningGateway, db_url: str) -> None:
    body = stdio("secretive", client_id="sec", auth_type="headers", headers={"X-Key": SECRET, "X-Env": "env.SOME_KEY"})
    body["stdio_config"]["envs"] = {"TOKEN": ENV_SECRET, "REF": "env.OTHER"}
    with admin(gateway) as api:
        assert api.post("/api/mcp/client", json=body).status_code == 200
        listed = api.get("/api/mcp/clients").text
        one = api.get("/api/mcp/client/sec").json()
    assert SECRET not in listed and ENV_SECRET not in listed
    assert one["config"]["headers"] == {"X-Key": "<redacted>", "X-Env": "env.SOME_KEY"}
    assert one["config"]["stdio_config"]["envs"] == {"TOKEN": "<redacted>", "REF": "env.OTHER"}
    raw = stored_text(db_url)
    assert "sec" in raw and SECRET not in raw and ENV_SECRET not in raw
    files = database_files(db_url)
    assert SECRET.encode() not in files and ENV_SECRET.encode() not in files


def test_edit_keeps_redacted_headers_and_refuses_connection_changes(
    gateway: RunningGateway, upstream: UpstreamServer
) -> None:
    body = {
        "name": "notes",
        "client_id": "notes",
        "connection_type": "http",
        "connection_string": upstream.url,
        "auth_type": "headers",
        "headers": {"X-Api-Key": SECRET},
    }
    with admin(gateway) as api:
        assert api.post("/api/mcp/client", json=body).status_code == 200
        wait_state(gateway, "notes", "connected")
        echoed = api.get("/api/mcp/client/notes").json()["config"]
        echoed["tools_to_execute"] = ["add", "echo"]
        saved = api.put("/api/mcp/client/notes", json=echoed)
        assert saved.status_code == 200, saved.text
        assert saved.json()["config"]["tools_to_execute"] == ["add", "echo"]
        upstream.stop()
        upstream.start()
        assert api.post("/api/mcp/client/notes/reconnect").status_code == 200
        wait_state(gateway, "notes", "connected")  # the kept header still opens the upstream
        for field, value in (
            ("connection_string", DEAD_URL),
            ("connection_type", "sse"),
            ("auth_type", "none"),
            ("oauth_config_id", "x"),
            ("client_id", "other"),
        ):
            refused = api.put("/api/mcp/client/notes", json={field: value})
            assert refused.status_code == 400, (field, refused.text)
            assert field in refused.json()["error"]["message"]
        unknown = api.put("/api/mcp/client/notes", json={"headers": {"X-New": "<redacted>"}})
        assert unknown.status_code == 400
        no_headers = api.put("/api/mcp/client/notes", json={"headers": {}})
        assert no_headers.status_code == 400 and "$.headers" in error_paths(no_headers)
        not_subset = api.put("/api/mcp/client/notes", json={"tools_to_auto_execute": ["whoami"]})
        assert not_subset.status_code == 400 and "$.tools_to_auto_execute" in error_paths(not_subset)
        bad_name = api.put("/api/mcp/client/notes", json={"name": "has-hyphen"})
        assert bad_name.status_code == 400 and "$.name" in error_paths(bad_name)
        assert api.put("/api/mcp/client/notes", json={"bogus": True}).status_code == 400
        final = api.get("/api/mcp/client/notes").json()["config"]
    assert final["name"] == "notes" and final["connection_string"] == upstream.url
    assert final["tools_to_execute"] == ["add", "echo"]


# --- listing -------------------------------------------------------------------------------------


def test_search_limit_offset(db_url: str, gateway_factory: Any) -> None:
    names = [f"client_{i:03d}" for i in range(30)] + ["Special_one"]
    declared = [stdio(name) for name in names]
    gateway: RunningGateway = gateway_factory(config={"mcp": {"client_configs": declared}}, db_url=db_url)
    default = clients(gateway)
    assert (default["count"], default["total_count"], default["limit"], default["offset"]) == (25, 31, 25, 0)
    assert [c["config"]["name"] for c in default["clients"]] == names[:25]
    page = clients(gateway, limit=10, offset=25)
    assert [c["config"]["name"] for c in page["clients"]] == names[25:]
    assert page["count"] == 6 and page["total_count"] == 31
    found = clients(gateway, search="special")
    assert [c["config"]["name"] for c in found["clients"]] == ["Special_one"] and found["total_count"] == 1
    too_big = clients(gateway, limit=1000)
    assert too_big["limit"] == 100 and too_big["count"] == 31
    with admin(gateway) as api:
        assert api.get("/api/mcp/clients", params={"limit": 0}).status_code == 400
        assert api.get("/api/mcp/clients", params={"offset": -1}).status_code == 400
        assert api.get("/api/mcp/clients", params={"limit": "many"}).status_code == 400


# --- virtual keys --------------------------------------------------------------------------------


def test_vk_configs_round_trip(gateway: RunningGateway) -> None:
    with admin(gateway) as api:
        assert api.post("/api/mcp/client", json=stdio("tools", client_id="tools")).status_code == 200
        vk_rules = [{"virtual_key_id": "vk-a", "tools_to_execute": ["search"]}, {"virtual_key_id": "vk-b"}]
        saved = api.put("/api/mcp/client/tools", json={"vk_configs": vk_rules})
        assert saved.status_code == 200, saved.text
        assert saved.json()["vk_configs"] == [
            {"virtual_key_id": "vk-a", "virtual_key_name": "team_a", "tools_to_execute": ["search"]},
            {"virtual_key_id": "vk-b", "virtual_key_name": "team_b", "tools_to_execute": []},
        ]
        vk_a = api.get("/api/governance/virtual-keys/vk-a").json()
        assert vk_a["mcp_configs"] == [
            {"mcp_client_id": "tools", "mcp_client_name": "tools", "tools_to_execute": ["search"]}
        ]
        echoed = api.put("/api/mcp/client/tools", json={"vk_configs": [saved.json()["vk_configs"][0]]})
        assert [r["virtual_key_id"] for r in echoed.json()["vk_configs"]] == ["vk-a"]
        assert api.get("/api/governance/virtual-keys/vk-b").json()["mcp_configs"] == []
        unknown = api.put("/api/mcp/client/tools", json={"vk_configs": [{"virtual_key_id": "vk-zzz"}]})
        twice = api.put("/api/mcp/client/tools", json={"vk_configs": [{"virtual_key_id": "vk-a"}] * 2})
        wildcard = api.put(
            "/api/mcp/client/tools", json={"vk_configs": [{"virtual_key_id": "vk-a", "tools_to_execute": ["*", "x"]}]}
        )
        assert unknown.status_code == twice.status_code == wildcard.status_code == 400
        assert api.get("/api/mcp/client/tools").json()["vk_configs"][0]["tools_to_execute"] == ["search"]
        assert api.delete("/api/mcp/client/tools").status_code == 200
        assert api.get("/api/governance/virtual-keys/vk-a").json()["mcp_configs"] == []


# --- unknown ids and verification ------------------------------------------------------------------


def test_unknown_ids_are_404(gateway: RunningGateway) -> None:
    with admin(gateway) as api:
        for method, path in (
            ("GET", "/api/mcp/client/nope"),
            ("PUT", "/api/mcp/client/nope"),
            ("DELETE", "/api/mcp/client/nope"),
            ("POST", "/api/mcp/client/nope/reconnect"),
            ("POST", "/api/mcp/client/nope/initiate-verification"),
            ("POST", "/api/mcp/client/nope/complete-oauth"),
        ):
            response = api.request(method, path, json={} if method == "PUT" else None)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["is_bifrost_error"] is True


def test_file_declared_oauth_clients_wait_for_verification(
    db_url: str, gateway_factory: Any, upstream: UpstreamServer
) -> None:
    declared = {
        "name": "notion",
        "client_id": "notion",
        "connection_type": "http",
        "connection_string": upstream.url,
        "auth_type": "per_user_oauth",
        "oauth_config": {
            "client_id": "heimdall",
            "client_secret": CLIENT_SECRET,
            "authorize_url": "http://127.0.0.1:9/authorize",
            "token_url": "http://127.0.0.1:9/token",
        },
    }
    started: RunningGateway = gateway_factory(config={"mcp": {"mcp_clients": [declared]}}, db_url=db_url)
    listed = clients(started)["clients"]
    assert [(c["config"]["name"], c["state"]) for c in listed] == [("notion", "pending_verification")]
    assert listed[0]["config"]["oauth_config"]["client_secret"] == "<redacted>"
    with admin(started) as api:
        reconnect = api.post("/api/mcp/client/notion/reconnect")
        assert reconnect.status_code == 400
        login = api.post("/api/mcp/client/notion/initiate-verification")
        assert login.status_code == 200, login.text
        pending = login.json()
        assert pending["status"] == "pending_oauth" and pending["mcp_client_id"] == "notion"
        assert pending["authorize_url"].startswith("http://127.0.0.1:9/authorize?")
        early = api.post(f"/api/mcp/client/{pending['oauth_config_id']}/complete-oauth")
    assert early.status_code == 400
    assert early.json()["error"]["message"] == "OAuth not authorized yet. Current status: pending"
    assert CLIENT_SECRET not in stored_text(db_url)


# --- OAuth logins (an upstream authorization server that issues one token) -------------------------


class TokenServer:
    """The upstream authorization server's token endpoint: any code is worth ``token``."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.forms: list[dict[str, str]] = []

        async def token_endpoint(request: Request) -> JSONResponse:
            self.forms.append({k: str(v) for k, v in (await request.form()).items()})
            return JSONResponse({"access_token": self.token, "token_type": "Bearer", "expires_in": 3600})

        self.thread = ServerThread(Starlette(routes=[Route("/token", token_endpoint, methods=["POST"])])).start()
        self.url = f"http://127.0.0.1:{self.thread.port}"


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    server = TokenServer("admin-token-1")
    yield server
    server.thread.stop()


def _login(gateway: RunningGateway, authorize_url: str) -> None:
    """The admin signed in upstream: the browser lands on the gateway's callback with a code."""
    state = parse_qs(urlsplit(authorize_url).query)["state"][0]
    with gateway.client() as browser:
        landed = browser.get("/api/oauth/callback", params={"code": "the-code", "state": state})
    assert landed.status_code == 200, landed.text


def oauth_body(name: str, auth_type: str, upstream: UpstreamServer, token_server: TokenServer) -> dict[str, Any]:
    return {
        "name": name,
        "connection_type": "http",
        "connection_string": upstream.url,
        "auth_type": auth_type,
        "oauth_config": {
            "client_id": "heimdall",
            "authorize_url": f"{token_server.url}/authorize",
            "token_url": f"{token_server.url}/token",
            "scopes": ["read"],
        },
    }


@pytest.fixture
def bearer_upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer("http", bearer={"admin-token-1": "admin"}) as server:
        yield server


def test_per_user_oauth_verification_discovers_tools_and_discards_the_token(
    gateway: RunningGateway, bearer_upstream: UpstreamServer, token_server: TokenServer, db_url: str
) -> None:
    with admin(gateway) as api:
        started = api.post(
            "/api/mcp/client", json=oauth_body("notion", "per_user_oauth", bearer_upstream, token_server)
        )
        assert started.status_code == 200, started.text
        pending = started.json()
        assert set(pending) == {"status", "message", "oauth_config_id", "authorize_url", "expires_at", "mcp_client_id"}
        assert pending["message"].startswith("Test OAuth configuration: please authorize to verify the setup.")
        assert clients(gateway)["total_count"] == 0  # nothing is saved before the login completed
        _login(gateway, pending["authorize_url"])
        done = api.post(f"/api/mcp/client/{pending['oauth_config_id']}/complete-oauth")
        assert done.status_code == 200, done.text
        result = done.json()
        assert result["tools_count"] >= 3
        assert result["message"] == (
            f"OAuth configuration verified successfully. {result['tools_count']} tools discovered. "
            "Each user will authenticate individually when using this MCP server."
        )
        status = api.get(f"/api/oauth/config/{pending['oauth_config_id']}/status").json()
        again = api.post(f"/api/mcp/client/{pending['oauth_config_id']}/complete-oauth")
    assert "token_id" not in status  # the admin's token is gone, the template stays
    assert again.status_code == 404
    assert again.json()["error"]["message"].startswith("MCP client not found in pending OAuth clients.")
    client = clients(gateway)["clients"][0]
    assert client["config"]["name"] == "notion" and client["config"]["oauth_config_id"] == pending["oauth_config_id"]
    assert client["state"] == "per_user"
    assert {"add", "whoami"} <= {tool["name"] for tool in client["tools"]}
    assert "admin-token-1" not in stored_text(db_url)
    assert any(r.headers.get("authorization") == "Bearer admin-token-1" for r in bearer_upstream.requests)


def test_oauth_client_is_saved_and_connected_after_login(
    gateway: RunningGateway, bearer_upstream: UpstreamServer, token_server: TokenServer
) -> None:
    with admin(gateway) as api:
        started = api.post("/api/mcp/client", json=oauth_body("shared", "oauth", bearer_upstream, token_server))
        assert started.status_code == 200, started.text
        pending = started.json()
        config_id = pending["oauth_config_id"]
        assert pending["status"] == "pending_oauth" and pending["message"] == "OAuth authorization required"
        assert pending["complete_url"] == f"/api/mcp/client/{config_id}/complete-oauth"
        assert pending["status_url"] == f"/api/oauth/config/{config_id}/status"
        assert len(pending["next_steps"]) == 3
        _login(gateway, pending["authorize_url"])
        done = api.post(pending["complete_url"])
    assert done.status_code == 200, done.text
    assert done.json()["message"] == "MCP client connected successfully with OAuth"
    client = wait_state(gateway, done.json()["mcp_client_id"], "connected")
    assert client["config"]["auth_type"] == "oauth" and client["config"]["oauth_config_id"] == config_id


def test_verifying_a_file_declared_client_activates_it_in_place(
    db_url: str, gateway_factory: Any, bearer_upstream: UpstreamServer, token_server: TokenServer
) -> None:
    declared = {**oauth_body("notion", "per_user_oauth", bearer_upstream, token_server), "client_id": "notion-1"}
    started: RunningGateway = gateway_factory(config={"mcp": {"client_configs": [declared]}}, db_url=db_url)
    assert clients(started)["clients"][0]["state"] == "pending_verification"
    with admin(started) as api:
        login = api.post("/api/mcp/client/notion-1/initiate-verification").json()
        assert set(login) == {"status", "message", "oauth_config_id", "authorize_url", "expires_at", "mcp_client_id"}
        _login(started, login["authorize_url"])
        done = api.post(f"/api/mcp/client/{login['oauth_config_id']}/complete-oauth")
    assert done.status_code == 200, done.text
    assert done.json()["mcp_client_id"] == "notion-1"
    listed = clients(started)
    assert listed["total_count"] == 1
    client = listed["clients"][0]
    assert client["state"] == "per_user" and client["tool_count"] == done.json()["tools_count"]
    assert client["config"]["oauth_config_id"] == login["oauth_config_id"]


def test_the_request_body_is_documented(gateway: RunningGateway) -> None:
    with gateway.client() as anonymous:
        spec = anonymous.get("/openapi.json").json()
    body = spec["paths"]["/api/mcp/client"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"name", "connection_type", "connection_string", "auth_type", "oauth_config"} <= set(body["properties"])
    assert "/api/mcp/client/{oauth_config_id}/complete-oauth" in spec["paths"]
