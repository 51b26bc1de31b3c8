"""Seeding MCP clients from config.json, and the MCP client repository, on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, text

from heimdall.config.loader import parse_config
from heimdall.config.model import GatewayConfig
from heimdall.config.seed import seed_store
from heimdall.crypto import SecretBox
from heimdall.mcp.config import MCPClientConfig
from heimdall.mcp.seed import TOOL_MANAGER_SETTING, seed_mcp
from heimdall.mcp.specs import build_spec
from heimdall.store import mcp_repos, repos
from heimdall.store.engine import create_engine, create_sessionmaker
from heimdall.store.mcp_models import MCPClientRow, OAuthConfigRow, OAuthTokenRow
from heimdall.store.migrate import upgrade_to_head
from heimdall.store.models import VirtualKeyRow
from heimdall.store.repos import Store

HEADER_SECRET = "hdr-secret-4f1c9a7e"
ENV_SECRET = "stdio-secret-8d2b6c1f"
OAUTH_SECRET = "oauth-secret-0a9e7d3c"


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    engine = create_engine(db_url)
    await upgrade_to_head(engine)
    yield Store(engine, create_sessionmaker(engine), SecretBox(secrets.token_bytes(32)))
    await engine.dispose()


def config(mcp: dict[str, Any], **rest: Any) -> GatewayConfig:
    return parse_config({"mcp": mcp, **rest}).config


async def seed(store: Store, cfg: GatewayConfig) -> list[str]:
    async with store.transaction() as session:
        return (await seed_mcp(session, store.box, cfg)).warnings


async def rows(store: Store) -> dict[str, MCPClientRow]:
    async with store.read() as session:
        return {row.name: row for row in await mcp_repos.list_clients(session)}


async def raw_dump(store: Store) -> str:
    """Every stored column of the MCP tables as text, to check that no secret is stored in the clear."""
    async with store.read() as session:
        parts = []
        for table in ("mcp_clients", "oauth_configs", "gateway_settings"):
            for row in (await session.execute(text(f"SELECT * FROM {table}"))).all():  # noqa: S608
                parts.append(repr(tuple(row)))
        return "\n".join(parts)


HTTP_CLIENT = {
    "name": "notes",
    "connection_type": "http",
    "connection_string": "http://127.0.0.1:9/mcp",
    "auth_type": "headers",
    "headers": {"X-Api-Key": HEADER_SECRET, "X-Env": "env.NOTES_KEY"},
    "tools_to_execute": ["*"],
    "tools_to_auto_execute": ["add"],
}
STDIO_CLIENT = {
    "name": "local",
    "connection_type": "stdio",
    "stdio_config": {"command": "python", "args": ["-m", "server"], "envs": {"TOKEN": ENV_SECRET}},
}
OAUTH_CLIENT = {
    "name": "shared_oauth",
    "connection_type": "http",
    "connection_string": "https://mcp.example.com/mcp",
    "auth_type": "oauth",
    "oauth_config": {"client_id": "cid", "client_secret": OAUTH_SECRET, "scopes": ["read"]},
}
PER_USER_CLIENT = {
    "name": "notion",
    "connection_type": "http",
    "connection_string": "https://mcp.notion.com/mcp",
    "auth_type": "per_user_oauth",
    "oauth_config": {"scopes": ["read"]},
    "tools_to_execute": ["*"],
}


async def test_client_configs_are_seeded_with_encrypted_secrets(store: Store) -> None:
    warnings = await seed(store, config({"client_configs": [HTTP_CLIENT, STDIO_CLIENT]}))
    assert warnings == []
    seeded = await rows(store)
    assert set(seeded) == {"notes", "local"}
    notes, local = seeded["notes"], seeded["local"]
    assert notes.status == local.status == "active"
    assert notes.tools_to_auto_execute == ["add"]
    assert mcp_repos.client_headers(store.box, notes) == {"X-Api-Key": HEADER_SECRET, "X-Env": "env.NOTES_KEY"}
    assert mcp_repos.client_stdio_env(store.box, local) == {"TOKEN": ENV_SECRET}
    assert local.stdio_config == {"command": "python", "args": ["-m", "server"], "cwd": None}
    dump = await raw_dump(store)
    assert HEADER_SECRET not in dump and ENV_SECRET not in dump
    spec = build_spec(store.box, local, 300)
    assert spec.stdio is not None and spec.stdio.env == {"TOKEN": ENV_SECRET}


async def test_mcp_clients_spelling_and_tool_manager_setting(store: Store) -> None:
    cfg = config({"mcp_clients": [HTTP_CLIENT], "tool_manager_config": {"max_agent_depth": 3}})
    await seed(store, cfg)
    assert set(await rows(store)) == {"notes"}
    async with store.read() as session:
        stored = await repos.get_setting(session, TOOL_MANAGER_SETTING)
    assert stored == {"max_agent_depth": 3, "tool_execution_timeout": 30, "tool_sync_interval": 300}


async def test_tool_manager_setting_is_left_alone_when_the_file_has_none(store: Store) -> None:
    await seed(store, config({"mcp_clients": [HTTP_CLIENT]}))
    async with store.read() as session:
        assert await repos.get_setting(session, TOOL_MANAGER_SETTING) is None


async def test_oauth_clients_from_the_file_wait_for_verification(store: Store) -> None:
    async with store.transaction() as session:
        report = await seed_mcp(session, store.box, config({"client_configs": [OAUTH_CLIENT, PER_USER_CLIENT]}))
    assert sorted(report.pending_verification) == ["notion", "shared_oauth"]
    seeded = await rows(store)
    assert seeded["notion"].status == seeded["shared_oauth"].status == "pending_verification"
    settings = mcp_repos.client_oauth_settings(store.box, seeded["shared_oauth"])
    assert settings is not None and settings.client_secret == OAUTH_SECRET and settings.scopes == ["read"]
    assert OAUTH_SECRET not in await raw_dump(store)


async def test_oauth_client_with_an_authorized_token_is_active(store: Store) -> None:
    async with store.transaction() as session:
        session.add(OAuthTokenRow(id="tok1", access_token_encrypted=store.box.encrypt("t", context="x"), scopes=[]))
        await session.flush()
        session.add(OAuthConfigRow(id="cfg1", status="authorized", token_id="tok1", scopes=[]))
    await seed(store, config({"client_configs": [{**OAUTH_CLIENT, "oauth_config_id": "cfg1"}]}))
    row = (await rows(store))["shared_oauth"]
    assert row.status == "active" and row.oauth_config_id == "cfg1"


async def test_unknown_oauth_config_id_is_ignored_with_a_warning(store: Store) -> None:
    warnings = await seed(store, config({"client_configs": [{**OAUTH_CLIENT, "oauth_config_id": "nope"}]}))
    assert warnings == ["$.mcp.client_configs[0].oauth_config_id: 'nope' does not exist; ignored"]
    row = (await rows(store))["shared_oauth"]
    assert row.oauth_config_id is None and row.status == "pending_verification"


async def test_restart_does_not_duplicate_and_keeps_verified_clients(store: Store) -> None:
    cfg = config({"client_configs": [HTTP_CLIENT, PER_USER_CLIENT]})
    await seed(store, cfg)
    first = await rows(store)
    async with store.transaction() as session:  # the admin's verification login completed
        row = await mcp_repos.get_client(session, first["notion"].id)
        assert row is not None
        row.status = "active"
        row.discovered = {"tools": [{"name": "search", "inputSchema": {"type": "object"}}]}
        await mcp_repos.save_client(session, row)
    await seed(store, cfg)
    again = await rows(store)
    assert {name: row.id for name, row in again.items()} == {name: row.id for name, row in first.items()}
    assert again["notion"].status == "active"
    assert again["notion"].discovered == {"tools": [{"name": "search", "inputSchema": {"type": "object"}}]}
    async with store.read() as session:
        assert await mcp_repos.count_clients(session) == 2
    moved = {**PER_USER_CLIENT, "connection_string": "https://elsewhere.example.com/mcp"}
    await seed(store, config({"client_configs": [HTTP_CLIENT, moved]}))
    assert (await rows(store))["notion"].status == "pending_verification"


async def test_upsert_by_client_id_renames_and_file_wins(store: Store) -> None:
    await seed(store, config({"client_configs": [{**HTTP_CLIENT, "client_id": "notes-1"}]}))
    changed = {**HTTP_CLIENT, "client_id": "notes-1", "name": "notes_v2", "tools_to_execute": ["add", "echo"]}
    await seed(store, config({"client_configs": [changed]}))
    seeded = await rows(store)
    assert set(seeded) == {"notes_v2"}
    assert seeded["notes_v2"].id == "notes-1"
    assert seeded["notes_v2"].tools_to_execute == ["add", "echo"]


async def test_api_clients_absent_from_the_file_are_kept(store: Store) -> None:
    async with store.transaction() as session:
        await mcp_repos.create_client(session, store.box, MCPClientConfig.model_validate({**STDIO_CLIENT}))
    await seed(store, config({"client_configs": [HTTP_CLIENT]}))
    assert set(await rows(store)) == {"notes", "local"}


async def test_name_held_by_another_client_is_reported(store: Store) -> None:
    await seed(
        store, config({"client_configs": [{**HTTP_CLIENT, "client_id": "a"}, {**STDIO_CLIENT, "client_id": "b"}]})
    )
    clash = {**STDIO_CLIENT, "client_id": "b", "name": "notes"}
    warnings = await seed(store, config({"client_configs": [clash]}))
    assert warnings == ["$.mcp.client_configs[0].name: 'notes' is used by another MCP client; not applied"]
    assert {row.id: name for name, row in (await rows(store)).items()} == {"a": "notes", "b": "local"}


async def test_seed_store_seeds_mcp_and_returns_its_warnings(store: Store) -> None:
    cfg = config({"mcp_clients": [{**OAUTH_CLIENT, "oauth_config_id": "missing"}]})
    async with store.transaction() as session:
        report = await seed_store(session, store.box, cfg)
    assert report.warnings == ["$.mcp.mcp_clients[0].oauth_config_id: 'missing' does not exist; ignored"]
    assert set(await rows(store)) == {"shared_oauth"}


async def test_every_write_bumps_the_store_version(store: Store) -> None:
    async with store.read() as session:
        before = await repos.get_version(session)
    await seed(store, config({"client_configs": [HTTP_CLIENT]}))
    async with store.read() as session:
        after = await repos.get_version(session)
    assert after > before
    async with store.transaction() as session:
        row = await mcp_repos.get_client_by_name(session, "notes")
        assert row is not None
        assert await mcp_repos.delete_client(session, row.id)
        assert not await mcp_repos.delete_client(session, row.id)
    async with store.read() as session:
        assert await repos.get_version(session) > after


# --- repository --------------------------------------------------------------------------------


async def test_search_limit_offset_and_count(store: Store) -> None:
    names = ["alpha", "beta", "Gamma_tools", "delta", "gamma2"]
    async with store.transaction() as session:
        for name in names:
            await mcp_repos.create_client(
                session, store.box, MCPClientConfig.model_validate({**STDIO_CLIENT, "name": name})
            )
    async with store.read() as session:
        assert [r.name for r in await mcp_repos.list_clients(session)] == names
        assert [r.name for r in await mcp_repos.list_clients(session, limit=2, offset=1)] == ["beta", "Gamma_tools"]
        assert [r.name for r in await mcp_repos.list_clients(session, search="GAMMA")] == ["Gamma_tools", "gamma2"]
        assert await mcp_repos.count_clients(session, search="gamma") == 2
        assert await mcp_repos.count_clients(session, search="%") == 0
        assert await mcp_repos.count_clients(session, search="a_t") == 1  # "_" is literal, not a wildcard
        assert await mcp_repos.count_clients(session) == 5


async def test_vk_rules_follow_renames_and_deletes(store: Store) -> None:
    async with store.transaction() as session:
        row = await mcp_repos.create_client(session, store.box, MCPClientConfig.model_validate(STDIO_CLIENT))
        other = await mcp_repos.create_client(
            session, store.box, MCPClientConfig.model_validate({**STDIO_CLIENT, "name": "other"})
        )
        session.add(
            VirtualKeyRow(
                id="vk1",
                name="team",
                value_hash="h1",
                mcp_configs=[
                    {"mcp_client_name": "local", "tools_to_execute": ["a"]},
                    {"mcp_client_name": "other", "tools_to_execute": ["*"]},
                ],
            )
        )
        session.add(VirtualKeyRow(id="vk2", name="zeta", value_hash="h2", mcp_configs=[]))
        await session.flush()
        rules = await mcp_repos.vk_rules_for(session, [row, other])
        assert [(r.virtual_key_id, r.tools_to_execute) for r in rules[row.id]] == [("vk1", ["a"])]
        await mcp_repos.replace_vk_rules(session, row, {"vk2": ["b", "c"]})
        with pytest.raises(LookupError):
            await mcp_repos.replace_vk_rules(session, row, {"missing": []})
        renamed = MCPClientConfig.model_validate({**STDIO_CLIENT, "name": "renamed"})
        await mcp_repos.update_client(session, store.box, row, renamed)
    async with store.read() as session:
        keys = {vk.id: vk.mcp_configs for vk in (await session.scalars(select(VirtualKeyRow))).all()}
    assert keys["vk1"] == [{"mcp_client_name": "other", "tools_to_execute": ["*"]}]
    assert keys["vk2"] == [{"mcp_client_id": row.id, "mcp_client_name": "renamed", "tools_to_execute": ["b", "c"]}]
    async with store.transaction() as session:
        assert await mcp_repos.delete_client(session, row.id)
    async with store.read() as session:
        vk2 = await session.get(VirtualKeyRow, "vk2")
    assert vk2 is not None and vk2.mcp_configs == []
