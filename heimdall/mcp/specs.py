"""Stored MCP client rows -> runtime specs (``env.NAME`` resolved, secrets decrypted, lists compiled)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson

from heimdall.config.allowlists import AllowList
from heimdall.config.loader import resolve_env
from heimdall.crypto import CryptoError, SecretBox
from heimdall.mcp.runtime import MCPClientSpec, StdioSpec
from heimdall.store.mcp_models import MCPClientRow

log = logging.getLogger(__name__)


def decrypt_json(box: SecretBox, value: str | None, context: str) -> dict[str, str]:
    if not value:
        return {}
    try:
        data: Any = orjson.loads(box.decrypt(value, context=context))
    except (CryptoError, orjson.JSONDecodeError):
        log.error("%s cannot be decrypted with the configured encryption key", context)
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def encrypt_json(box: SecretBox, value: dict[str, str], context: str) -> str | None:
    return box.encrypt(orjson.dumps(value).decode(), context=context) if value else None


def headers_context(client_id: str) -> str:
    return f"mcp_client_headers:{client_id}"


def stdio_env_context(client_id: str) -> str:
    return f"mcp_client_stdio_env:{client_id}"


def _resolved(values: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in values.items():
        resolved = resolve_env(value)
        if resolved is not None:
            out[name] = resolved
    return out


def build_spec(box: SecretBox, row: MCPClientRow, default_sync_interval: float) -> MCPClientSpec:
    stdio = None
    if row.connection_type == "stdio" and row.stdio_config:
        env = _resolved(decrypt_json(box, row.stdio_env_encrypted, stdio_env_context(row.id)))
        stdio = StdioSpec(
            command=str(row.stdio_config.get("command", "")),
            args=tuple(str(a) for a in row.stdio_config.get("args") or []),
            env=env,
            cwd=row.stdio_config.get("cwd"),
        )
    url = resolve_env(row.connection_string) if row.connection_string else None
    return MCPClientSpec(
        id=row.id,
        name=row.name,
        connection_type=row.connection_type,
        url=url,
        stdio=stdio,
        auth_type=row.auth_type,
        headers=_resolved(decrypt_json(box, row.headers_encrypted, headers_context(row.id))),
        allowed_extra_headers=AllowList(row.allowed_extra_headers or []),
        tools_to_execute=AllowList(row.tools_to_execute or []),
        tools_to_auto_execute=AllowList(row.tools_to_auto_execute or []),
        is_ping_available=row.is_ping_available,
        tool_sync_interval=float(row.tool_sync_interval or default_sync_interval),
        allow_on_all_virtual_keys=row.allow_on_all_virtual_keys,
        oauth_config_id=row.oauth_config_id,
        status=row.status,
        discovered=row.discovered,
    )


def build_specs(box: SecretBox, rows: Sequence[MCPClientRow], default_sync_interval: float) -> list[MCPClientSpec]:
    return [build_spec(box, row, default_sync_interval) for row in rows]
