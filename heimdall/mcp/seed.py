"""Seed MCP clients and the tool manager settings from config.json.

Clients are upserted by ``client_id``, else by name; clients created through the API and absent
from the file are kept. ``none`` and ``headers`` clients are active at once. ``oauth`` and
``per_user_oauth`` clients wait in ``pending_verification`` until an admin runs the test login
(``POST /api/mcp/client/{id}/initiate-verification``, or ``heimdall mcp verify NAME``) — unless
they were verified before and their connection has not changed since, or, for ``oauth``, a
server-level token already exists for them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.config.model import GatewayConfig
from heimdall.crypto import SecretBox
from heimdall.mcp.config import MCPClientConfig
from heimdall.store import mcp_repos, repos
from heimdall.store.mcp_models import MCPClientRow, OAuthConfigRow

log = logging.getLogger(__name__)

#: The gateway setting that holds ``mcp.tool_manager_config``.
TOOL_MANAGER_SETTING = "mcp_tool_manager"


@dataclass
class MCPSeedReport:
    clients: int = 0
    #: Names of clients waiting for an admin's verification login.
    pending_verification: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _same_connection(row: MCPClientRow, client: MCPClientConfig) -> bool:
    return (row.connection_type, row.connection_string, row.auth_type) == (
        client.connection_type,
        client.connection_string,
        client.auth_type,
    )


async def _has_server_token(session: AsyncSession, oauth_config_id: str | None) -> bool:
    if not oauth_config_id:
        return False
    config = await session.get(OAuthConfigRow, oauth_config_id)
    return config is not None and config.status == "authorized" and config.token_id is not None


async def initial_status(session: AsyncSession, client: MCPClientConfig, existing: MCPClientRow | None) -> str:
    """``active`` or ``pending_verification`` for a client the file declares."""
    if client.auth_type in ("none", "headers"):
        return mcp_repos.ACTIVE
    unchanged = existing is not None and _same_connection(existing, client)
    if client.auth_type == "oauth":
        oauth_config_id = client.oauth_config_id or (existing.oauth_config_id if unchanged and existing else None)
        if await _has_server_token(session, oauth_config_id):
            return mcp_repos.ACTIVE
    if unchanged and existing is not None and existing.status == mcp_repos.ACTIVE:
        return mcp_repos.ACTIVE
    return mcp_repos.PENDING_VERIFICATION


async def _seed_one(
    session: AsyncSession, box: SecretBox, client: MCPClientConfig, path: str, report: MCPSeedReport
) -> None:
    if client.client_id is not None and len(client.client_id) > mcp_repos.CLIENT_ID_MAX:
        report.warnings.append(f"{path}.client_id: longer than {mcp_repos.CLIENT_ID_MAX} characters; not applied")
        return
    existing = await mcp_repos.get_client(session, client.client_id) if client.client_id else None
    existing = existing or await mcp_repos.get_client_by_name(session, client.name)
    holder = await mcp_repos.get_client_by_name(session, client.name)
    if existing is not None and holder is not None and holder.id != existing.id:
        report.warnings.append(f"{path}.name: {client.name!r} is used by another MCP client; not applied")
        return
    if client.oauth_config_id and await session.get(OAuthConfigRow, client.oauth_config_id) is None:
        report.warnings.append(f"{path}.oauth_config_id: {client.oauth_config_id!r} does not exist; ignored")
        client = client.model_copy(update={"oauth_config_id": None})
    if existing is not None and client.client_id and client.client_id != existing.id:
        report.warnings.append(
            f"{path}.client_id: the client named {client.name!r} is stored as {existing.id!r}; keeping that id"
        )
    status = await initial_status(session, client, existing)
    if existing is None:
        await mcp_repos.create_client(session, box, client, status=status)
    else:
        await mcp_repos.update_client(session, box, existing, client, status=status)
    report.clients += 1
    if status == mcp_repos.PENDING_VERIFICATION:
        report.pending_verification.append(client.name)


async def seed_mcp(session: AsyncSession, box: SecretBox, config: GatewayConfig) -> MCPSeedReport:
    """Upsert the file's MCP clients (``mcp.client_configs`` and ``mcp.mcp_clients``) and tool manager config."""
    report = MCPSeedReport()
    for section in ("client_configs", "mcp_clients"):
        clients: list[MCPClientConfig] = getattr(config.mcp, section)
        for index, client in enumerate(clients):
            await _seed_one(session, box, client, f"$.mcp.{section}[{index}]", report)
    if "tool_manager_config" in config.mcp.model_fields_set:
        await repos.set_setting(session, TOOL_MANAGER_SETTING, config.mcp.tool_manager_config.model_dump())
    for warning in report.warnings:
        log.warning("%s", warning)
    for name in report.pending_verification:
        log.warning(
            "MCP client %r waits for verification: run its test login in the UI, or `heimdall mcp verify %s`",
            name,
            name,
        )
    return report
