"""The management API end to end: a real gateway over HTTP on SQLite and PostgreSQL (every test runs on both).

Covers admin authentication, providers and keys (write-only secrets), alias validation, virtual keys,
/api/config, /health, /metrics, the OpenAPI document, encryption at rest, seeding from config.json
and malformed input (always a 4xx envelope, never a 422 or a 500, and the store unchanged).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, select
from sqlalchemy.engine import Connection

from heimdall.crypto import KEY_FILE_NAME, SecretBox, generate_key, load_or_create_key, parse_key
from heimdall.store.base import Base
from heimdall.store.engine import create_engine
from heimdall.store.models import ProviderKeyRow, VirtualKeyRow
from tests.support.gateway import ADMIN_TOKEN, RunningGateway

Factory = Callable[..., RunningGateway]

LITERAL_SECRET = "sk-proj-LITERAL-provider-secret-9f8e7d6c5b4a"
ROTATED_SECRET = "sk-proj-ROTATED-provider-secret-0a1b2c3d4e5f"
CONFIG_SECRET = "sk-config-file-secret-literal-77665544"
CONFIG_VK = "sk-bf-config-file-virtual-key-0000000000001"
ENCRYPTION_KEY = generate_key()


@pytest.fixture
def gateway(db_url: str, gateway_factory: Factory) -> RunningGateway:
    # db_url first: fixtures are torn down in reverse, so the gateways stop before their database is dropped.
    return gateway_factory(db_url=db_url)


@pytest.fixture
def admin(gateway: RunningGateway) -> httpx.Client:
    return gateway.admin()


def assert_envelope(response: httpx.Response, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["is_bifrost_error"] is True
    assert body["status_code"] == status
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["type"], str)
    assert isinstance(body["extra_fields"], dict)
    for fragment in fragments:
        assert fragment in body["error"]["message"], body["error"]["message"]
    return body


def provider_body(name: str = "openai", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "keys": [{"value": LITERAL_SECRET, "models": ["*"], "aliases": {"fast": "gpt-4o-mini"}}],
        **fields,
    }


def dump_database(db_url: str) -> str:
    """Every row of every table in the database, as text: what someone holding a copy of it would see."""

    def dump(connection: Connection) -> str:
        reflected = MetaData()
        reflected.reflect(connection)
        assert set(Base.metadata.tables) & set(reflected.tables), "the store's tables are there"
        parts: list[str] = []
        for table in reflected.sorted_tables:
            parts.extend(repr(tuple(row)) for row in connection.execute(select(table)))
        return "\n".join(parts)

    async def run() -> str:
        engine = create_engine(db_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(dump)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def read_rows(db_url: str, model: type[Any]) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_engine(db_url)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(select(model.__table__))).all())
        finally:
            await engine.dispose()

    return asyncio.run(run())


def box_of(gateway: RunningGateway) -> SecretBox:
    return SecretBox(load_or_create_key(gateway.app_dir, None))


# --- admin credential -------------------------------------------------------------------------

ADMIN_ROUTES = [
    ("GET", "/api/providers"),
    ("POST", "/api/providers"),
    ("GET", "/api/providers/openai"),
    ("PUT", "/api/providers/openai"),
    ("DELETE", "/api/providers/openai"),
    ("GET", "/api/providers/openai/keys"),
    ("POST", "/api/providers/openai/keys"),
    ("PUT", "/api/providers/openai/keys/openai-0"),
    ("DELETE", "/api/providers/openai/keys/openai-0"),
    ("GET", "/api/governance/virtual-keys"),
    ("POST", "/api/governance/virtual-keys"),
    ("GET", "/api/governance/virtual-keys/vk-1"),
    ("PUT", "/api/governance/virtual-keys/vk-1"),
    ("DELETE", "/api/governance/virtual-keys/vk-1"),
    ("GET", "/api/config"),
    ("PUT", "/api/config"),
]


def test_admin_credential_is_required_everywhere(gateway: RunningGateway) -> None:
    anonymous = gateway.client()
    wrong = gateway.client(authorization="Bearer hk-admin-wrong")
    for method, path in ADMIN_ROUTES:
        body = assert_envelope(anonymous.request(method, path, json={}), 401, "admin credential required")
        assert body["error"]["type"] == "authentication_error"
        response = wrong.request(method, path, json={})
        assert_envelope(response, 401, "invalid admin credential")
        assert response.headers["www-authenticate"].startswith("Bearer")
        # Malformed bodies do not let an anonymous caller probe the API: still 401, not 400.
        response = anonymous.request(method, path, content=b"{not json", headers={"content-type": "application/json"})
        assert_envelope(response, 401)
        assert "www-authenticate" in response.headers


def test_admin_credential_forms(gateway: RunningGateway) -> None:
    client = gateway.client()
    assert client.get("/api/providers", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
    assert client.get("/api/providers", headers={"Authorization": f"bearer {ADMIN_TOKEN}"}).status_code == 200
    assert client.get("/api/providers", headers={"x-admin-token": ADMIN_TOKEN}).status_code == 200
    for header in (f"Basic {ADMIN_TOKEN}", "Bearer", ADMIN_TOKEN, f"Bearer {ADMIN_TOKEN}x", "Bearer  x"):
        response = client.get("/api/providers", headers={"Authorization": header})
        assert_envelope(response, 401)
        assert response.headers["www-authenticate"] == 'Bearer realm="heimdall-admin"'


def test_admin_token_is_not_stored_in_clear(gateway: RunningGateway, db_url: str) -> None:
    dump = dump_database(db_url)
    assert ADMIN_TOKEN not in dump
    assert box_of(gateway).lookup_hash(ADMIN_TOKEN) in dump


def test_operations_and_docs_are_public(gateway: RunningGateway) -> None:
    client = gateway.client()
    for path in ("/health", "/metrics", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path


# --- providers and keys -----------------------------------------------------------------------


def test_provider_crud(admin: httpx.Client) -> None:
    assert admin.get("/api/providers").json() == {"providers": []}

    response = admin.post(
        "/api/providers",
        json=provider_body(network_config={"base_url": "https://api.openai.com/v1/", "max_retries": 3}),
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["name"] == "openai"
    assert created["kind"] == "openai"
    assert created["network_config"]["base_url"] == "https://api.openai.com"
    assert created["network_config"]["max_retries"] == 3
    [key] = created["keys"]
    assert key["id"] == "openai-0"
    assert key["aliases"] == {"fast": "gpt-4o-mini"}

    assert admin.get("/api/providers/openai").json() == created
    assert admin.get("/api/providers").json() == {"providers": [created]}

    assert_envelope(admin.post("/api/providers", json=provider_body()), 409, "already exists")

    custom = admin.post(
        "/api/providers",
        json={
            "name": "local_vllm",
            "custom_provider_config": {"base_provider_type": "openai"},
            "network_config": {"base_url": "http://127.0.0.1:9/v1"},
        },
    )
    assert custom.status_code == 201, custom.text
    assert custom.json()["kind"] == "openai"
    assert [p["name"] for p in admin.get("/api/providers").json()["providers"]] == ["openai", "local_vllm"]

    updated = admin.put("/api/providers/openai", json={"network_config": {"base_url": "https://proxy.example/v1"}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["network_config"]["base_url"] == "https://proxy.example"
    assert updated.json()["keys"] == created["keys"], "editing the network config keeps the keys"

    deleted = admin.delete("/api/providers/openai")
    assert deleted.status_code == 200
    assert deleted.json()["status"] == "success"
    assert_envelope(admin.get("/api/providers/openai"), 404, "not found")
    assert_envelope(admin.get("/api/providers/openai/keys"), 404)
    assert_envelope(admin.delete("/api/providers/openai"), 404)
    assert_envelope(admin.put("/api/providers/openai", json={}), 404)
    assert [p["name"] for p in admin.get("/api/providers").json()["providers"]] == ["local_vllm"]


def test_provider_validation_errors(admin: httpx.Client) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "acme"}, "$.providers.acme.custom_provider_config"),
        ({"name": "my-provider", "custom_provider_config": {"base_provider_type": "openai"}}, "letters, digits"),
        ({"name": "acme", "custom_provider_config": {"base_provider_type": "openai"}}, "base_url"),
        ({"name": "azure", "keys": [{"value": "x", "models": ["*"]}]}, "azure_key_config"),
        ({"name": "openai", "network_config": {"base_url": "ftp://x"}}, "$.network_config.base_url"),
        ({"name": "openai", "keys": [{"value": "x", "models": ["*", "gpt-4o"]}]}, "$.keys[0].models"),
        ({"name": "openai", "keys": [{"id": "k", "value": "x"}, {"id": "k", "value": "y"}]}, "already used"),
        ({"name": "p" * 65, "custom_provider_config": {"base_provider_type": "openai"}}, "1-64"),
        ({"keys": []}, "$.name"),
        ({"name": "openai", "unexpected": 1}, "$.unexpected"),
    ]
    for body, fragment in cases:
        assert_envelope(admin.post("/api/providers", json=body), 400, fragment)
    assert_envelope(admin.put("/api/providers/openai", json={}), 404)
    assert admin.post("/api/providers", json={"name": "openai"}).status_code == 201
    assert_envelope(admin.put("/api/providers/openai", json={"network_config": {"base_url": "nope"}}), 400, "base_url")
    assert_envelope(
        admin.put("/api/providers/openai", json={"network_config": {"max_retries": 99}}), 400, "max_retries"
    )
    assert admin.get("/api/providers").json()["providers"][0]["network_config"]["max_retries"] == 1
    assert [p["name"] for p in admin.get("/api/providers").json()["providers"]] == ["openai"]


def test_key_values_are_write_only(gateway: RunningGateway, admin: httpx.Client, db_url: str) -> None:
    created = admin.post("/api/providers", json=provider_body())
    assert created.status_code == 201
    assert LITERAL_SECRET not in created.text
    [literal] = created.json()["keys"]
    assert literal["value"] is None
    assert literal["value_hint"] == "…" + LITERAL_SECRET[-4:]

    env_key = admin.post(
        "/api/providers/openai/keys",
        json={"name": "from-env", "value": "env.OPENAI_API_KEY", "models": ["gpt-4o"], "weight": 2},
    )
    assert env_key.status_code == 201, env_key.text
    assert env_key.json() == {
        "id": "openai-from-env",
        "name": "from-env",
        "provider": "openai",
        "value": "env.OPENAI_API_KEY",
        "value_hint": None,
        "models": ["gpt-4o"],
        "weight": 2.0,
        "aliases": {},
        "azure_key_config": None,
    }

    for path in ("/api/providers", "/api/providers/openai", "/api/providers/openai/keys"):
        text = admin.get(path).text
        assert LITERAL_SECRET not in text
        assert LITERAL_SECRET[:-4] not in text
    keys = admin.get("/api/providers/openai/keys").json()
    assert [k["id"] for k in keys] == ["openai-0", "openai-from-env"]

    # Editing without a value keeps the stored secret; with one, replaces it.
    edited = admin.put("/api/providers/openai/keys/openai-0", json={"aliases": {"smart": "gpt-4o"}, "weight": 0.5})
    assert edited.status_code == 200, edited.text
    assert edited.json()["aliases"] == {"smart": "gpt-4o"}
    assert edited.json()["weight"] == 0.5
    assert edited.json()["value_hint"] == literal["value_hint"]
    box = box_of(gateway)
    [row] = [r for r in read_rows(db_url, ProviderKeyRow) if r.id == "openai-0"]
    assert box.decrypt(row.value_encrypted, context="provider_key:openai-0") == LITERAL_SECRET

    rotated = admin.put("/api/providers/openai/keys/openai-0", json={"value": ROTATED_SECRET})
    assert rotated.status_code == 200
    assert ROTATED_SECRET not in rotated.text
    assert rotated.json()["value_hint"] == "…" + ROTATED_SECRET[-4:]
    assert rotated.json()["aliases"] == {"smart": "gpt-4o"}, "fields not sent are kept"
    [row] = [r for r in read_rows(db_url, ProviderKeyRow) if r.id == "openai-0"]
    assert box.decrypt(row.value_encrypted, context="provider_key:openai-0") == ROTATED_SECRET


def test_key_crud(admin: httpx.Client) -> None:
    assert admin.post("/api/providers", json=provider_body()).status_code == 201
    assert admin.post("/api/providers", json={"name": "groq"}).status_code == 201
    second = admin.post("/api/providers/openai/keys", json={"value": "sk-second-key-123456", "models": ["gpt-4o"]})
    assert second.status_code == 201
    assert second.json()["id"] == "openai-1"

    assert_envelope(admin.post("/api/providers/openai/keys", json={"id": "openai-1", "value": "x"}), 409, "in use")
    assert_envelope(admin.post("/api/providers/groq/keys", json={"id": "openai-1", "value": "x"}), 409, "in use")
    assert_envelope(admin.post("/api/providers/nope/keys", json={"value": "x"}), 404)
    assert_envelope(admin.put("/api/providers/groq/keys/openai-1", json={}), 404, "not found")
    assert_envelope(admin.delete("/api/providers/groq/keys/openai-1"), 404, "not found")
    assert_envelope(admin.put("/api/providers/openai/keys/nope", json={}), 404)

    assert admin.delete("/api/providers/openai/keys/openai-0").json()["status"] == "success"
    assert_envelope(admin.delete("/api/providers/openai/keys/openai-0"), 404)
    # A new key without id or name gets a free id, even though the list got shorter.
    third = admin.post("/api/providers/openai/keys", json={"value": "sk-third-key-123456", "models": ["*"]})
    assert third.status_code == 201, third.text
    assert third.json()["id"] not in ("openai-1",)
    assert [k["id"] for k in admin.get("/api/providers/openai/keys").json()] == ["openai-1", third.json()["id"]]

    azure = admin.post(
        "/api/providers",
        json={
            "name": "azure",
            "keys": [
                {
                    "value": "az-key-1234567890",
                    "models": ["gpt-4o"],
                    "azure_key_config": {"endpoint": "https://r.openai.azure.com"},
                }
            ],
        },
    )
    assert azure.status_code == 201, azure.text
    assert azure.json()["keys"][0]["azure_key_config"] == {
        "endpoint": "https://r.openai.azure.com",
        "api_version": "2024-10-21",
    }
    assert_envelope(admin.post("/api/providers/azure/keys", json={"value": "x", "models": ["*"]}), 400, "azure")

    # Deleting a provider deletes its keys.
    assert admin.delete("/api/providers/openai").status_code == 200
    assert admin.post("/api/providers", json={"name": "openai"}).json()["keys"] == []


BAD_ALIASES: list[tuple[dict[str, Any], str]] = [
    ({" fast": "gpt-4o-mini"}, '$.aliases[" fast"]'),
    ({"fast ": "gpt-4o-mini"}, '$.aliases["fast "]'),
    ({"fast": " gpt-4o-mini"}, "$.aliases.fast"),
    ({"": "gpt-4o-mini"}, '$.aliases[""]'),
    ({"fast": ""}, "$.aliases.fast"),
    ({"Fast": "gpt-4o-mini", "FAST": "gpt-4o"}, "$.aliases.FAST"),
    ({"fast": 5}, "$.aliases.fast"),
    ({"fast": None}, "$.aliases.fast"),
]


def test_alias_validation_errors_leave_the_store_unchanged(admin: httpx.Client) -> None:
    assert admin.post("/api/providers", json=provider_body()).status_code == 201
    before = admin.get("/api/providers").json()
    for aliases, path in BAD_ALIASES:
        for method, url, body in (
            ("PUT", "/api/providers/openai/keys/openai-0", {"aliases": aliases}),
            ("POST", "/api/providers/openai/keys", {"value": "sk-new-1234567890", "models": ["*"], "aliases": aliases}),
        ):
            response = admin.request(method, url, json=body)
            envelope = assert_envelope(response, 400, path)
            assert envelope["error"]["type"] == "invalid_request_error"
            assert any(problem.startswith(path) for problem in envelope["extra_fields"]["errors"])
        response = admin.post(
            "/api/providers", json={"name": "groq", "keys": [{"value": "x", "models": ["*"], "aliases": aliases}]}
        )
        assert_envelope(response, 400, "$.keys[0]" + path[1:])
        assert admin.get("/api/providers").json() == before, f"store changed after {aliases!r}"

    # Valid aliases are stored as given: exact case kept, any provider model id allowed.
    good = {"Best-Model": "gpt-4o-2024-11-20", "ft": "ft:gpt-4o-mini:org:custom:abc123"}
    response = admin.put("/api/providers/openai/keys/openai-0", json={"aliases": good})
    assert response.status_code == 200
    assert admin.get("/api/providers/openai").json()["keys"][0]["aliases"] == good


def test_allow_list_validation(admin: httpx.Client) -> None:
    assert admin.post("/api/providers", json=provider_body()).status_code == 201
    before = admin.get("/api/providers").json()
    for models, fragment in (
        (["*", "gpt-4o"], '"*" cannot be combined'),
        (["a", "a"], "duplicate"),
        ([""], "non-empty"),
    ):
        assert_envelope(admin.put("/api/providers/openai/keys/openai-0", json={"models": models}), 400, "$.models")
        assert_envelope(admin.post("/api/providers/openai/keys", json={"value": "x", "models": models}), 400, fragment)
    assert admin.get("/api/providers").json() == before


# --- virtual keys -----------------------------------------------------------------------------


def test_virtual_key_crud(gateway: RunningGateway, admin: httpx.Client, db_url: str) -> None:
    response = admin.post(
        "/api/governance/virtual-keys",
        json={
            "name": "team-a",
            "description": "Team A",
            "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o"], "key_ids": ["*"]}],
            "mcp_configs": [{"mcp_client_name": "notion", "tools_to_execute": ["*"]}],
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    value = created["value"]
    assert value.startswith("sk-bf-") and len(value) > 30
    assert created["value_hint"] == "…" + value[-4:]
    assert created["is_active"] is True
    vk_id = created["id"]

    listed = admin.get("/api/governance/virtual-keys")
    assert listed.json()["count"] == 1
    assert value not in listed.text
    [entry] = listed.json()["virtual_keys"]
    assert "value" not in entry
    one = admin.get(f"/api/governance/virtual-keys/{vk_id}")
    assert value not in one.text
    assert "value" not in one.json()
    assert one.json() == entry
    assert entry["provider_configs"] == [
        {"provider": "openai", "allowed_models": ["gpt-4o"], "key_ids": ["*"], "weight": 1.0}
    ]
    assert entry["mcp_configs"] == [{"mcp_client_name": "notion", "tools_to_execute": ["*"]}]

    # Only a keyed hash of the value is stored.
    [row] = read_rows(db_url, VirtualKeyRow)
    assert row.value_hash == box_of(gateway).lookup_hash(value)
    assert value not in dump_database(db_url)

    updated = admin.put(
        f"/api/governance/virtual-keys/{vk_id}",
        json={
            "name": "team-a2",
            "is_active": False,
            "provider_configs": [{"provider": "groq", "allowed_models": ["*"]}],
        },
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "team-a2"
    assert updated.json()["is_active"] is False
    assert updated.json()["description"] == "Team A"
    assert updated.json()["provider_configs"][0]["provider"] == "groq"
    assert value not in updated.text
    [row_after] = read_rows(db_url, VirtualKeyRow)
    assert row_after.value_hash == row.value_hash, "the value never changes on update"

    explicit = admin.post(
        "/api/governance/virtual-keys", json={"id": "vk-explicit", "name": "b", "value": "sk-bf-chosen-value-0001"}
    )
    assert explicit.status_code == 201
    assert explicit.json()["value"] == "sk-bf-chosen-value-0001"
    assert explicit.json()["id"] == "vk-explicit"

    assert admin.delete(f"/api/governance/virtual-keys/{vk_id}").json()["status"] == "success"
    assert_envelope(admin.get(f"/api/governance/virtual-keys/{vk_id}"), 404, "not found")
    assert_envelope(admin.delete(f"/api/governance/virtual-keys/{vk_id}"), 404)
    assert_envelope(admin.put(f"/api/governance/virtual-keys/{vk_id}", json={}), 404)
    assert [vk["name"] for vk in admin.get("/api/governance/virtual-keys").json()["virtual_keys"]] == ["b"]


def test_virtual_key_conflicts(admin: httpx.Client) -> None:
    first = admin.post(
        "/api/governance/virtual-keys", json={"id": "vk-1", "name": "one", "value": "sk-bf-first-value-00001"}
    )
    assert first.status_code == 201
    second = admin.post("/api/governance/virtual-keys", json={"name": "two"})
    assert second.status_code == 201
    before = admin.get("/api/governance/virtual-keys").json()

    assert_envelope(admin.post("/api/governance/virtual-keys", json={"name": "one"}), 409, "named 'one'")
    assert_envelope(admin.post("/api/governance/virtual-keys", json={"id": "vk-1", "name": "x"}), 409, "vk-1")
    response = admin.post("/api/governance/virtual-keys", json={"name": "x", "value": "sk-bf-first-value-00001"})
    body = assert_envelope(response, 409, "already in use")
    assert body["error"]["type"] == "conflict_error"
    assert "sk-bf-first-value-00001" not in response.text
    assert_envelope(admin.put("/api/governance/virtual-keys/vk-1", json={"name": "two"}), 409, "named 'two'")
    assert admin.get("/api/governance/virtual-keys").json() == before


#: (body, fragment of the error); the body without id and value is also sent as an update.
BAD_VK_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"name": "x", "provider_configs": [{"provider": "openai", "allowed_models": ["*", "gpt-4o"]}]}, "allowed_models"),
    ({"name": "x", "provider_configs": [{"provider": "openai", "allowed_models": ["a", "a"]}]}, "duplicate entry"),
    ({"name": "x", "provider_configs": [{"provider": "openai", "key_ids": ["k", "*"]}]}, "key_ids"),
    ({"name": "x", "provider_configs": [{"allowed_models": ["*"]}]}, "$.provider_configs[0].provider"),
    ({"name": "x", "provider_configs": [{"provider": "openai"}, {"provider": "openai"}]}, "duplicate provider"),
    ({"name": "x", "provider_configs": [{"provider": "openai", "weight": -1}]}, "weight"),
    ({"name": "x", "provider_configs": "openai"}, "$.provider_configs"),
    ({"name": "x", "provider_configs": [["openai"]]}, "$.provider_configs[0]"),
    ({"name": "x", "mcp_configs": [{"tools_to_execute": ["*"]}]}, "mcp_client_name"),
    ({"name": "x", "mcp_configs": [{"mcp_client_name": "n", "tools_to_execute": ["*", "t"]}]}, "tools_to_execute"),
    ({"name": "x", "is_active": "perhaps"}, "$.is_active"),
    ({"name": "x", "value": "not-a-virtual-key"}, "sk-bf-"),
    ({"name": "x", "value": "env.TEAM_VK"}, "sk-bf-"),
    ({"name": ""}, "$.name"),
    ({"name": "n" * 256}, "$.name"),
    ({"name": "a\u0000b"}, "NUL"),
    ({"name": "x", "description": "a\u0000b"}, "NUL"),
    ({"name": "x", "id": "has/slash"}, "$.id"),
    ({"name": "x", "id": "v" * 129}, "$.id"),
    ({"description": "no name"}, "$.name"),
]


def test_invalid_virtual_keys_are_400s_and_change_nothing(admin: httpx.Client) -> None:
    assert admin.post("/api/governance/virtual-keys", json={"id": "vk-1", "name": "existing"}).status_code == 201
    before = admin.get("/api/governance/virtual-keys").json()
    for body, fragment in BAD_VK_BODIES:
        assert_envelope(admin.post("/api/governance/virtual-keys", json=body), 400, fragment)
        update = {k: v for k, v in body.items() if k not in ("id", "value")}
        if update not in ({"name": "x"}, {"description": "no name"}):  # those are valid updates
            response = admin.put("/api/governance/virtual-keys/vk-1", json=update)
            assert_envelope(response, 400, fragment)
    assert_envelope(admin.put("/api/governance/virtual-keys/vk-1", json={"value": "sk-bf-new"}), 400, "$.value")
    assert admin.get("/api/governance/virtual-keys").json() == before


def test_virtual_keys_gate_inference(admin: httpx.Client, gateway: RunningGateway) -> None:
    created = admin.post("/api/governance/virtual-keys", json={"id": "vk-gate", "name": "gate"}).json()
    request = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

    unknown = gateway.client(vk="sk-bf-unknown-key-000000000000").post("/v1/chat/completions", json=request)
    assert assert_envelope(unknown, 401)["error"].get("code") == "invalid_virtual_key"

    assert admin.put("/api/governance/virtual-keys/vk-gate", json={"is_active": False}).status_code == 200
    inactive = gateway.client(vk=created["value"]).post("/v1/chat/completions", json=request)
    assert assert_envelope(inactive, 403, "inactive")["error"].get("code") == "virtual_key_inactive"

    assert admin.put("/api/governance/virtual-keys/vk-gate", json={"is_active": True}).status_code == 200
    active = gateway.client(vk=created["value"]).post("/v1/chat/completions", json=request)
    assert active.status_code != 401
    assert active.json()["error"].get("code") != "virtual_key_inactive"

    assert admin.delete("/api/governance/virtual-keys/vk-gate").status_code == 200
    deleted = gateway.client(vk=created["value"]).post("/v1/chat/completions", json=request)
    assert_envelope(deleted, 401)


# --- /api/config, /health, /metrics, OpenAPI --------------------------------------------------


def test_config_get_and_put(admin: httpx.Client, gateway: RunningGateway, db_url: str) -> None:
    config = admin.get("/api/config").json()
    assert config["client"] == {"enforce_auth_on_inference": False, "max_request_body_size_mb": None}
    assert config["store"] == ("sqlite" if db_url.startswith("sqlite") else "postgresql")
    assert config["public_url"].startswith("http://127.0.0.1:")

    response = admin.put("/api/config", json={"client": {"enforce_auth_on_inference": True}})
    assert response.status_code == 200, response.text
    assert response.json()["client"]["enforce_auth_on_inference"] is True
    assert admin.get("/api/config").json()["client"]["enforce_auth_on_inference"] is True

    # The setting takes effect at once: inference now needs a virtual key.
    request = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    no_key = gateway.client().post("/v1/chat/completions", json=request)
    assert assert_envelope(no_key, 401)["error"].get("code") == "virtual_key_required"

    before = admin.get("/api/config").json()
    for body, fragment in (
        ({"client": {"enforce_auth_on_inference": "maybe"}}, "$.client.enforce_auth_on_inference"),
        ({"client": {"max_request_body_size_mb": 0}}, "$.client.max_request_body_size_mb"),
        ({"client": {"max_request_body_size_mb": "big"}}, "$.client.max_request_body_size_mb"),
        ({"client": "strict"}, "$.client"),
        ({}, "$.client"),
        ({"client": {}, "public_url": "https://evil.example"}, "$.public_url"),
    ):
        assert_envelope(admin.put("/api/config", json=body), 400, fragment)
    assert admin.get("/api/config").json() == before


def test_health(gateway: RunningGateway, admin: httpx.Client) -> None:
    response = gateway.client().get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    version = response.json()["store_version"]
    assert admin.post("/api/providers", json={"name": "openai"}).status_code == 201
    assert gateway.client().get("/health").json()["store_version"] > version


def test_metrics_text_format(gateway: RunningGateway) -> None:
    request = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    gateway.client().post("/v1/chat/completions", json=request)  # any outcome; metrics exist regardless
    response = gateway.client().get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    text = response.text
    for name in ("heimdall_requests_total", "heimdall_request_duration_seconds"):
        assert f"# HELP {name} " in text
        assert f"# TYPE {name} " in text
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_and_labels, _, sample = line.rpartition(" ")
            assert name_and_labels, line
            float(sample)


def test_openapi_document_and_docs(gateway: RunningGateway) -> None:
    client = gateway.client()
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Heimdall"
    paths = document["paths"]
    expected = {
        "/api/providers": {"get", "post"},
        "/api/providers/{name}": {"get", "put", "delete"},
        "/api/providers/{name}/keys": {"get", "post"},
        "/api/providers/{name}/keys/{key_id}": {"put", "delete"},
        "/api/governance/virtual-keys": {"get", "post"},
        "/api/governance/virtual-keys/{vk_id}": {"get", "put", "delete"},
        "/api/config": {"get", "put"},
        "/health": {"get"},
        "/metrics": {"get"},
        "/v1/chat/completions": {"post"},
        "/v1/embeddings": {"post"},
        "/v1/models": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    assert "requestBody" in paths["/v1/chat/completions"]["post"]

    docs = client.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "swagger" in docs.text.lower()
    assert "/openapi.json" in docs.text


def test_unknown_routes_and_methods_are_envelopes(admin: httpx.Client) -> None:
    assert_envelope(admin.get("/api/nope"), 404)
    assert_envelope(admin.patch("/api/providers"), 405)
    assert_envelope(admin.post("/api/config", json={}), 405)


# --- encryption at rest -----------------------------------------------------------------------


def test_secrets_are_encrypted_at_rest(
    gateway: RunningGateway, admin: httpx.Client, db_url: str, tmp_path: Path
) -> None:
    assert admin.post("/api/providers", json=provider_body()).status_code == 201
    env_ref = admin.post("/api/providers/openai/keys", json={"name": "env", "value": "env.SECRET_VAR_NAME"})
    assert env_ref.status_code == 201
    vk_value = admin.post("/api/governance/virtual-keys", json={"name": "team"}).json()["value"]
    chosen_vk = "sk-bf-chosen-virtual-key-value-123"
    assert admin.post("/api/governance/virtual-keys", json={"name": "team2", "value": chosen_vk}).status_code == 201

    dump = dump_database(db_url)
    for secret in (LITERAL_SECRET, LITERAL_SECRET[4:20], vk_value, vk_value[6:30], chosen_vk, ADMIN_TOKEN):
        assert secret not in dump, f"{secret[:10]}… is stored in clear"
    # Even env references are not readable: they are encrypted like literal keys.
    assert "SECRET_VAR_NAME" not in dump

    rows = {row.id: row for row in read_rows(db_url, ProviderKeyRow)}
    box = box_of(gateway)
    assert rows["openai-0"].value_encrypted.startswith("v1:")
    assert box.decrypt(rows["openai-0"].value_encrypted, context="provider_key:openai-0") == LITERAL_SECRET
    assert box.decrypt(rows["openai-env"].value_encrypted, context="provider_key:openai-env") == "env.SECRET_VAR_NAME"
    assert {row.value_hash for row in read_rows(db_url, VirtualKeyRow)} == {
        box.lookup_hash(vk_value),
        box.lookup_hash(chosen_vk),
    }

    if db_url.startswith("sqlite"):
        # The raw file (and its write-ahead log) does not contain the secrets either.
        gateway.stop()
        files = [p for p in tmp_path.iterdir() if p.name.startswith("heimdall.db")]
        assert files
        raw = b"".join(p.read_bytes() for p in files)
        for secret in (LITERAL_SECRET, vk_value, chosen_vk, ADMIN_TOKEN):
            assert secret.encode() not in raw


def test_key_file_is_private(gateway: RunningGateway) -> None:
    path = gateway.app_dir / KEY_FILE_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(parse_key(path.read_text())) == 32


# --- seeding from config.json -----------------------------------------------------------------

SEED_CONFIG: dict[str, Any] = {
    "providers": {
        "openai": {
            "keys": [
                {"id": "openai-main", "value": CONFIG_SECRET, "models": ["*"], "aliases": {"fast": "gpt-4o-mini"}},
                {"name": "backup", "value": "env.HEIMDALL_TEST_BACKUP_KEY", "models": ["gpt-4o"], "weight": 0.5},
            ],
            "network_config": {"base_url": "https://api.openai.com/v1", "max_retries": 2},
        },
        "azure": {
            "keys": [
                {
                    "value": "az-config-secret-123456",
                    "models": ["gpt-4o"],
                    "azure_key_config": {"endpoint": "https://r.openai.azure.com", "deployments": {"gpt-4o": "dep"}},
                }
            ]
        },
    },
    "governance": {
        "virtual_keys": [
            {
                "id": "vk-team-a",
                "name": "team-a",
                "value": CONFIG_VK,
                "provider_configs": [{"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"]}],
            },
            {"id": "vk-generated", "name": "generated"},
            {"id": "vk-env", "name": "from-env", "value": "env.HEIMDALL_TEST_UNSET_VK"},
        ]
    },
    "client": {"enforce_auth_on_inference": True},
}


def state(admin: httpx.Client) -> dict[str, Any]:
    return {
        "providers": admin.get("/api/providers").json(),
        "virtual_keys": admin.get("/api/governance/virtual-keys").json(),
        "client": admin.get("/api/config").json()["client"],
    }


def test_config_file_seeds_the_store(
    db_url: str, gateway_factory: Factory, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HEIMDALL_TEST_UNSET_VK", raising=False)
    gateway = gateway_factory(config=copy.deepcopy(SEED_CONFIG), db_url=db_url, encryption_key=ENCRYPTION_KEY)
    admin = gateway.admin()
    seeded = state(admin)

    providers = {p["name"]: p for p in seeded["providers"]["providers"]}
    assert set(providers) == {"openai", "azure"}
    assert providers["openai"]["network_config"]["base_url"] == "https://api.openai.com"
    assert providers["openai"]["network_config"]["max_retries"] == 2
    keys = {k["id"]: k for k in providers["openai"]["keys"]}
    assert set(keys) == {"openai-main", "openai-backup"}
    assert keys["openai-main"]["value"] is None
    assert keys["openai-main"]["value_hint"] == "…" + CONFIG_SECRET[-4:]
    assert keys["openai-main"]["aliases"] == {"fast": "gpt-4o-mini"}
    assert keys["openai-backup"]["value"] == "env.HEIMDALL_TEST_BACKUP_KEY"
    assert keys["openai-backup"]["weight"] == 0.5
    [azure_key] = providers["azure"]["keys"]
    assert azure_key["aliases"] == {"gpt-4o": "dep"}, "legacy deployments arrive as aliases"
    assert "deployments" not in azure_key["azure_key_config"]
    assert CONFIG_SECRET not in str(seeded)

    vks = {vk["id"]: vk for vk in seeded["virtual_keys"]["virtual_keys"]}
    assert set(vks) == {"vk-team-a", "vk-generated"}, "a key whose env var is unset is not created"
    assert vks["vk-team-a"]["value_hint"] == "…" + CONFIG_VK[-4:]
    assert seeded["client"]["enforce_auth_on_inference"] is True

    # The file's virtual key works for inference, and only a hash of it is stored.
    request = {"model": "nope/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert gateway.client().post("/v1/chat/completions", json=request).status_code == 401
    with_vk = gateway.client(vk=CONFIG_VK).post("/v1/chat/completions", json=request)
    assert with_vk.status_code not in (401, 403), with_vk.text
    dump = dump_database(db_url)
    assert CONFIG_VK not in dump
    assert CONFIG_SECRET not in dump

    # The generated value of a file key without one is printed once, on the first start.
    err = capfd.readouterr().err
    assert "'generated' was generated (shown once): sk-bf-" in err
    generated_value = err.split("'generated' was generated (shown once): ", 1)[1].split()[0]
    assert box_of_key(ENCRYPTION_KEY).lookup_hash(generated_value) in dump

    # Restart with the same file: nothing is duplicated, nothing is generated again.
    gateway.stop()
    again = gateway_factory(config=copy.deepcopy(SEED_CONFIG), db_url=db_url, encryption_key=ENCRYPTION_KEY)
    assert state(again.admin()) == seeded
    assert "was generated" not in capfd.readouterr().err


def box_of_key(key: str) -> SecretBox:
    return SecretBox(parse_key(key))


def test_api_changes_survive_a_restart(db_url: str, gateway_factory: Factory) -> None:
    first = gateway_factory(config=copy.deepcopy(SEED_CONFIG), db_url=db_url, encryption_key=ENCRYPTION_KEY)
    admin = first.admin()
    assert admin.post("/api/providers", json=provider_body("groq")).status_code == 201
    api_vk = admin.post("/api/governance/virtual-keys", json={"id": "vk-api", "name": "api-made"}).json()
    extra = admin.post("/api/providers/openai/keys", json={"name": "api-key", "value": "sk-api-added-123456"})
    assert extra.status_code == 201
    before = state(admin)
    first.stop()

    second = gateway_factory(config=copy.deepcopy(SEED_CONFIG), db_url=db_url, encryption_key=ENCRYPTION_KEY)
    after = state(second.admin())
    assert after == before
    names = [p["name"] for p in after["providers"]["providers"]]
    assert names.count("groq") == 1 and names.count("openai") == 1
    assert [k["id"] for k in after["providers"]["providers"][0]["keys"]].count("openai-api-key") == 1

    # The secret of an API-created key still decrypts after the restart, and its VK still authenticates.
    [row] = [r for r in read_rows(db_url, ProviderKeyRow) if r.id == "openai-api-key"]
    assert box_of_key(ENCRYPTION_KEY).decrypt(row.value_encrypted, context="provider_key:openai-api-key") == (
        "sk-api-added-123456"
    )
    request = {"model": "nope/x", "messages": [{"role": "user", "content": "hi"}]}
    response = second.client(vk=api_vk["value"]).post("/v1/chat/completions", json=request)
    assert response.status_code not in (401, 403), response.text

    # Without a config file, the store is served as it is.
    second.stop()
    third = gateway_factory(db_url=db_url, encryption_key=ENCRYPTION_KEY)
    assert state(third.admin()) == before


def test_file_wins_for_what_it_names(db_url: str, gateway_factory: Factory) -> None:
    first = gateway_factory(config=copy.deepcopy(SEED_CONFIG), db_url=db_url, encryption_key=ENCRYPTION_KEY)
    admin = first.admin()
    edit = admin.put("/api/providers/openai/keys/openai-main", json={"aliases": {"edited": "gpt-4o"}})
    assert edit.status_code == 200
    assert admin.put("/api/config", json={"client": {"enforce_auth_on_inference": False}}).status_code == 200
    first.stop()

    second = gateway_factory(config=copy.deepcopy(SEED_CONFIG), db_url=db_url, encryption_key=ENCRYPTION_KEY)
    admin = second.admin()
    keys = {k["id"]: k for k in admin.get("/api/providers/openai/keys").json()}
    assert keys["openai-main"]["aliases"] == {"fast": "gpt-4o-mini"}
    assert admin.get("/api/config").json()["client"]["enforce_auth_on_inference"] is True


# --- malformed input --------------------------------------------------------------------------

BODY_ROUTES = [
    ("POST", "/api/providers"),
    ("PUT", "/api/providers/openai"),
    ("POST", "/api/providers/openai/keys"),
    ("PUT", "/api/providers/openai/keys/openai-0"),
    ("POST", "/api/governance/virtual-keys"),
    ("PUT", "/api/governance/virtual-keys/vk-1"),
    ("PUT", "/api/config"),
]

MALFORMED_BODIES: list[tuple[bytes, str]] = [
    (b"{", "malformed JSON"),
    (b'{"name": "openai",}', "malformed JSON"),
    (b'{"name": "openai"} trailing', "malformed JSON"),
    (b"\xff\xfe\x00", "malformed JSON"),
    (b"", "$"),
    (b"null", "$"),
    (b"[]", "$"),
    (b'"string"', "$"),
    (b"42", "$"),
]


def test_malformed_bodies_are_400_envelopes(admin: httpx.Client) -> None:
    assert admin.post("/api/providers", json=provider_body()).status_code == 201
    assert admin.post("/api/governance/virtual-keys", json={"id": "vk-1", "name": "one"}).status_code == 201
    before = state(admin)
    for method, path in BODY_ROUTES:
        for content, fragment in MALFORMED_BODIES:
            response = admin.request(method, path, content=content, headers={"content-type": "application/json"})
            body = assert_envelope(response, 400, fragment)
            assert body["error"]["type"] == "invalid_request_error"
        response = admin.request(method, path, content=b"name=x", headers={"content-type": "text/plain"})
        assert_envelope(response, 400)
    assert state(admin) == before


WRONG_TYPES: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/api/providers", {"name": 5}, "$.name"),
    ("POST", "/api/providers", {"name": "groq", "keys": "x"}, "$.keys"),
    ("POST", "/api/providers", {"name": "groq", "keys": [{"value": ["x"]}]}, "$.keys[0].value"),
    ("POST", "/api/providers", {"name": "groq", "keys": [{"value": "x", "weight": "heavy"}]}, "$.keys[0].weight"),
    ("POST", "/api/providers", {"name": "groq", "network_config": {"max_retries": "3x"}}, "max_retries"),
    ("POST", "/api/providers", {"name": "groq", "network_config": {"extra_headers": {"a": 1}}}, "extra_headers"),
    ("PUT", "/api/providers/openai", {"network_config": []}, "$.network_config"),
    ("PUT", "/api/providers/openai", {"custom_provider_config": {"base_provider_type": "bedrock"}}, "base_provider"),
    ("POST", "/api/providers/openai/keys", {"value": 5}, "$.value"),
    ("POST", "/api/providers/openai/keys", {"models": ["*"]}, "$.value"),
    ("POST", "/api/providers/openai/keys", {"value": "x", "models": "*"}, "$.models"),
    ("POST", "/api/providers/openai/keys", {"value": "x", "id": "a b"}, "$.id"),
    ("POST", "/api/providers/openai/keys", {"value": "x", "name": "n" * 200}, "longer than 128"),
    ("PUT", "/api/providers/openai/keys/openai-0", {"weight": -1}, "$.weight"),
    ("PUT", "/api/providers/openai/keys/openai-0", {"aliases": ["fast"]}, "$.aliases"),
    ("PUT", "/api/providers/openai/keys/openai-0", {"models": [1]}, "$.models[0]"),
    ("PUT", "/api/providers/openai/keys/openai-0", {"unknown": True}, "$.unknown"),
    ("PUT", "/api/providers/openai/keys/openai-0", {"name": "a\u0000b"}, "NUL"),
    ("POST", "/api/governance/virtual-keys", {"name": ["x"]}, "$.name"),
    ("PUT", "/api/governance/virtual-keys/vk-1", {"provider_configs": {"provider": "x"}}, "$.provider_configs"),
    ("PUT", "/api/config", {"client": {"enforce_auth_on_inference": 2}}, "enforce_auth_on_inference"),
]


def test_wrong_types_are_400_envelopes_with_paths(admin: httpx.Client) -> None:
    assert admin.post("/api/providers", json=provider_body()).status_code == 201
    assert admin.post("/api/governance/virtual-keys", json={"id": "vk-1", "name": "one"}).status_code == 201
    before = state(admin)
    for method, path, body, fragment in WRONG_TYPES:
        response = admin.request(method, path, json=body)
        envelope = assert_envelope(response, 400, fragment)
        assert envelope["extra_fields"].get("errors") or envelope["error"].get("param"), envelope
    assert state(admin) == before


def test_values_the_database_cannot_hold_are_400s(admin: httpx.Client) -> None:
    """PostgreSQL rejects over-long strings and NUL characters; the API must catch them first."""
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/providers", {"name": "n" * 100, "custom_provider_config": {"base_provider_type": "openai"}}),
        ("POST", "/api/providers", {"name": "openai", "keys": [{"id": "k" * 200, "value": "x"}]}),
        ("POST", "/api/providers", {"name": "openai", "keys": [{"name": "k" * 300, "value": "x"}]}),
        ("POST", "/api/providers", {"name": "openai", "keys": [{"name": "k" * 127, "value": "x"}]}),
        ("POST", "/api/providers", {"name": "openai", "keys": [{"name": "a\u0000", "value": "x"}]}),
        ("POST", "/api/governance/virtual-keys", {"name": "x", "id": "v" * 200}),
        ("POST", "/api/governance/virtual-keys", {"name": "x\u0000y"}),
        ("POST", "/api/governance/virtual-keys", {"name": "y", "description": "\u0000"}),
    ]
    for method, path, body in cases:
        assert_envelope(admin.request(method, path, json=body), 400)
    assert admin.get("/api/providers").json() == {"providers": []}
    assert admin.get("/api/governance/virtual-keys").json()["count"] == 0
    # NUL inside a secret is fine: secrets are encrypted before they are stored.
    response = admin.post(
        "/api/providers", json={"name": "openai", "keys": [{"value": "sk-\u0000weird", "models": []}]}
    )
    assert response.status_code == 201, response.text
    assert admin.get("/health").status_code == 200


def test_invalid_json_numbers_are_rejected(admin: httpx.Client) -> None:
    for raw in (
        b'{"name": "openai", "keys": [{"value": "x", "weight": 1e400}]}',
        b'{"name": "openai", "keys": [{"value": "x", "weight": NaN}]}',
        b'{"name": "openai", "keys": [{"value": "x", "weight": Infinity}]}',
    ):
        response = admin.post("/api/providers", content=raw, headers={"content-type": "application/json"})
        assert_envelope(response, 400)
    assert admin.get("/api/providers").json() == {"providers": []}
