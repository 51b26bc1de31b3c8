"""Async repository functions for MCP clients (``mcp_clients``) and their virtual-key rules.

Static headers, stdio environments and the declared ``oauth_config`` are stored encrypted, each
bound to the row id (``SecretBox`` associated data), so ciphertexts cannot be moved between rows.
Every write bumps the store version, which is how the other gateway processes learn of it. The
caller owns the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from heimdall.crypto import CryptoError, SecretBox
from heimdall.mcp.config import MCPClientConfig, OAuthSettings, StdioConfig
from heimdall.mcp.specs import decrypt_json, encrypt_json, headers_context, stdio_env_context
from heimdall.store.mcp_models import MCPClientRow
from heimdall.store.models import VirtualKeyRow
from heimdall.store.repos import bump_version

ACTIVE = "active"
PENDING_VERIFICATION = "pending_verification"
#: Stored ids fit ``mcp_clients.id`` (String(64)).
CLIENT_ID_MAX = 64


def oauth_settings_context(client_id: str) -> str:
    return f"mcp_client_oauth_settings:{client_id}"


def new_client_id() -> str:
    return f"mcp-{uuid.uuid4().hex[:16]}"


# --- reading ---------------------------------------------------------------------------------


def _matching(query: Select[Any], search: str | None) -> Select[Any]:
    if search:
        query = query.where(func.lower(MCPClientRow.name).contains(search.strip().lower(), autoescape=True))
    return query


async def list_clients(
    session: AsyncSession, *, search: str | None = None, limit: int | None = None, offset: int = 0
) -> Sequence[MCPClientRow]:
    """Clients in display order; ``search`` matches a substring of the name, case-insensitively."""
    query = _matching(select(MCPClientRow), search).order_by(MCPClientRow.position, MCPClientRow.name)
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return (await session.scalars(query)).all()


async def count_clients(session: AsyncSession, *, search: str | None = None) -> int:
    total = await session.scalar(_matching(select(func.count()).select_from(MCPClientRow), search))
    return int(total or 0)


async def get_client(session: AsyncSession, client_id: str) -> MCPClientRow | None:
    return await session.get(MCPClientRow, client_id)


async def uses_oauth_config(session: AsyncSession, oauth_config_id: str) -> bool:
    """Whether any client still points at this OAuth configuration."""
    query = select(MCPClientRow.id).where(MCPClientRow.oauth_config_id == oauth_config_id).limit(1)
    return (await session.scalars(query)).first() is not None


async def get_client_by_name(session: AsyncSession, name: str) -> MCPClientRow | None:
    return (await session.scalars(select(MCPClientRow).where(MCPClientRow.name == name))).first()


def client_headers(box: SecretBox, row: MCPClientRow) -> dict[str, str]:
    """The stored static headers, with ``env.NAME`` references left unresolved."""
    return decrypt_json(box, row.headers_encrypted, headers_context(row.id))


def client_stdio_env(box: SecretBox, row: MCPClientRow) -> dict[str, str]:
    return decrypt_json(box, row.stdio_env_encrypted, stdio_env_context(row.id))


def client_oauth_settings(box: SecretBox, row: MCPClientRow) -> OAuthSettings | None:
    if not row.oauth_settings_encrypted:
        return None
    try:
        raw = box.decrypt(row.oauth_settings_encrypted, context=oauth_settings_context(row.id))
        return OAuthSettings.model_validate_json(raw)
    except (CryptoError, ValueError):
        return None


def client_config(box: SecretBox, row: MCPClientRow) -> MCPClientConfig:
    """The full (unredacted) configuration a row was made from."""
    stdio = None
    if row.stdio_config is not None:
        stdio = {**row.stdio_config, "envs": client_stdio_env(box, row)}
    oauth = client_oauth_settings(box, row)
    return MCPClientConfig.model_construct(
        client_id=row.id,
        name=row.name,
        connection_type=row.connection_type,  # type: ignore[arg-type]
        connection_string=row.connection_string,
        stdio_config=None if stdio is None else _stdio_model(stdio),
        auth_type=row.auth_type,  # type: ignore[arg-type]
        oauth_config=oauth,
        oauth_config_id=row.oauth_config_id,
        headers=client_headers(box, row),
        allowed_extra_headers=list(row.allowed_extra_headers or []),
        tools_to_execute=list(row.tools_to_execute or []),
        tools_to_auto_execute=list(row.tools_to_auto_execute or []),
        is_ping_available=row.is_ping_available,
        tool_sync_interval=row.tool_sync_interval,
        allow_on_all_virtual_keys=row.allow_on_all_virtual_keys,
    )


def _stdio_model(data: dict[str, Any]) -> StdioConfig:
    return StdioConfig.model_construct(
        command=str(data.get("command", "")),
        args=[str(a) for a in data.get("args") or []],
        envs=dict(data.get("envs") or {}),
        cwd=data.get("cwd"),
    )


# --- writing ---------------------------------------------------------------------------------


def apply_config(box: SecretBox, row: MCPClientRow, config: MCPClientConfig) -> None:
    """Copy a validated configuration onto a row (its id is kept; the secrets are re-encrypted)."""
    row.name = config.name
    row.connection_type = config.connection_type
    row.connection_string = config.connection_string
    row.auth_type = config.auth_type
    if config.oauth_config_id is not None:
        row.oauth_config_id = config.oauth_config_id
    if config.stdio_config is not None:
        stdio = config.stdio_config
        row.stdio_config = {"command": stdio.command, "args": list(stdio.args), "cwd": stdio.cwd}
        row.stdio_env_encrypted = encrypt_json(box, dict(stdio.envs), stdio_env_context(row.id))
    else:
        row.stdio_config = None
        row.stdio_env_encrypted = None
    row.headers_encrypted = encrypt_json(box, dict(config.headers), headers_context(row.id))
    if config.oauth_config is not None:
        row.oauth_settings_encrypted = box.encrypt(
            config.oauth_config.model_dump_json(exclude_none=True), context=oauth_settings_context(row.id)
        )
    else:
        row.oauth_settings_encrypted = None
    row.allowed_extra_headers = list(config.allowed_extra_headers)
    row.tools_to_execute = list(config.tools_to_execute)
    row.tools_to_auto_execute = list(config.tools_to_auto_execute)
    row.is_ping_available = config.is_ping_available
    row.tool_sync_interval = config.tool_sync_interval
    row.allow_on_all_virtual_keys = config.allow_on_all_virtual_keys


async def create_client(
    session: AsyncSession,
    box: SecretBox,
    config: MCPClientConfig,
    *,
    status: str = ACTIVE,
    discovered: dict[str, Any] | None = None,
) -> MCPClientRow:
    """Insert a client; its id is ``config.client_id`` or a new one.

    Raises:
        ValueError: the id is longer than ``CLIENT_ID_MAX``.
    """
    client_id = config.client_id or new_client_id()
    if len(client_id) > CLIENT_ID_MAX:
        raise ValueError(f"client_id must be at most {CLIENT_ID_MAX} characters")
    position = await session.scalar(select(func.coalesce(func.max(MCPClientRow.position) + 1, 0)))
    row = MCPClientRow(id=client_id, name=config.name, position=int(position or 0), status=status)
    apply_config(box, row, config)
    row.discovered = discovered
    session.add(row)
    await session.flush()
    await bump_version(session)
    return row


async def save_client(session: AsyncSession, row: MCPClientRow) -> MCPClientRow:
    """Persist changes made to a loaded row (``apply_config``, ``status``, ``discovered``...)."""
    session.add(row)
    await session.flush()
    await bump_version(session)
    return row


async def update_client(
    session: AsyncSession,
    box: SecretBox,
    row: MCPClientRow,
    config: MCPClientConfig,
    *,
    status: str | None = None,
    discovered: dict[str, Any] | None = None,
) -> MCPClientRow:
    """Replace a row's configuration (and optionally its status and discovered lists)."""
    old_name = row.name
    apply_config(box, row, config)
    if status is not None:
        row.status = status
    if discovered is not None:
        row.discovered = discovered
    if old_name != row.name:
        await _rename_in_virtual_keys(session, row.id, old_name, row.name)
    return await save_client(session, row)


async def delete_client(session: AsyncSession, client_id: str) -> bool:
    """Remove a client and every virtual-key rule that names it.

    Rows that belong to the client (per-user upstream tokens) reference ``mcp_clients.id`` with
    ``ON DELETE CASCADE`` and go with it, in this transaction.
    """
    row = await session.get(MCPClientRow, client_id)
    if row is None:
        return False
    await _drop_from_virtual_keys(session, row.id, row.name)
    await session.execute(delete(MCPClientRow).where(MCPClientRow.id == client_id))
    await bump_version(session)
    return True


# --- virtual-key rules -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VKClientRule:
    virtual_key_id: str
    virtual_key_name: str
    tools_to_execute: list[str]


def _names_client(entry: dict[str, Any], client_id: str, name: str) -> bool:
    """Whether a virtual key's ``mcp_configs`` entry is about this client (by id, else by name)."""
    entry_id = entry.get("mcp_client_id")
    if entry_id:
        return bool(entry_id == client_id)
    return bool(entry.get("mcp_client_name") == name)


async def vk_rules_for(session: AsyncSession, rows: Sequence[MCPClientRow]) -> dict[str, list[VKClientRule]]:
    """Client id -> the virtual keys with an explicit rule for it (in key-name order)."""
    keys = (await session.scalars(select(VirtualKeyRow).order_by(VirtualKeyRow.name))).all()
    result: dict[str, list[VKClientRule]] = {row.id: [] for row in rows}
    for vk in keys:
        for entry in vk.mcp_configs or []:
            for row in rows:
                if _names_client(entry, row.id, row.name):
                    tools = [str(t) for t in entry.get("tools_to_execute") or []]
                    result[row.id].append(VKClientRule(vk.id, vk.name, tools))
    return result


async def replace_vk_rules(session: AsyncSession, row: MCPClientRow, rules: dict[str, list[str]]) -> None:
    """Make ``rules`` (virtual key id -> tools_to_execute) the complete set of virtual-key rules for a client.

    Raises:
        LookupError: a virtual key id does not exist (nothing is changed).
    """
    keys = {vk.id: vk for vk in (await session.scalars(select(VirtualKeyRow))).all()}
    unknown = sorted(set(rules) - set(keys))
    if unknown:
        raise LookupError(f"virtual key(s) not found: {unknown}")
    for vk in keys.values():
        kept = [e for e in vk.mcp_configs or [] if not _names_client(e, row.id, row.name)]
        if vk.id in rules:
            kept.append({"mcp_client_id": row.id, "mcp_client_name": row.name, "tools_to_execute": rules[vk.id]})
        if kept != list(vk.mcp_configs or []):
            vk.mcp_configs = kept
    await session.flush()
    await bump_version(session)


async def _rename_in_virtual_keys(session: AsyncSession, client_id: str, old: str, new: str) -> None:
    for vk in (await session.scalars(select(VirtualKeyRow))).all():
        entries = list(vk.mcp_configs or [])
        if any(_names_client(e, client_id, old) for e in entries):
            vk.mcp_configs = [{**e, "mcp_client_name": new} if _names_client(e, client_id, old) else e for e in entries]


async def _drop_from_virtual_keys(session: AsyncSession, client_id: str, name: str) -> None:
    for vk in (await session.scalars(select(VirtualKeyRow))).all():
        entries = list(vk.mcp_configs or [])
        kept = [e for e in entries if not _names_client(e, client_id, name)]
        if len(kept) != len(entries):
            vk.mcp_configs = kept
