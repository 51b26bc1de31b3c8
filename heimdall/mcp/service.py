"""The MCP gateway as one object: specs from the store, upstream connections, catalog, /mcp server, agent."""

from __future__ import annotations

import logging
from typing import Any

from heimdall.crypto import SecretBox
from heimdall.llm.pipeline import InferencePipeline
from heimdall.mcp.agent import Agent
from heimdall.mcp.catalog import Catalog
from heimdall.mcp.config import ToolManagerConfig
from heimdall.mcp.credentials import CredentialRouter
from heimdall.mcp.server import GatewayMCPServer
from heimdall.mcp.specs import build_specs
from heimdall.mcp.tool_calls import ToolExecutor
from heimdall.mcp.upstream import UpstreamManager
from heimdall.store import mcp_repos, repos
from heimdall.store.repos import Store

log = logging.getLogger(__name__)

TOOL_MANAGER_SETTING = "mcp_tool_manager"


class MCPService:
    def __init__(self, store: Store, box: SecretBox, pipeline: InferencePipeline, version: str) -> None:
        self.store = store
        self.box = box
        self.tool_config = ToolManagerConfig()
        self.credentials = CredentialRouter()
        self.upstreams = UpstreamManager(self.credentials, self.tool_config, on_catalog_change=self._catalog_changed)
        self.catalog = Catalog(self.upstreams)
        self.server = GatewayMCPServer(
            self.catalog, self.upstreams, lambda: self.tool_config.tool_execution_timeout, version
        )
        self.executor = ToolExecutor(self.catalog, self.upstreams, self.tool_config.tool_execution_timeout)
        self.agent = Agent(pipeline, self.executor, self.tool_config.max_agent_depth)

    @property
    def active(self) -> bool:
        return bool(self.catalog.specs)

    async def _catalog_changed(self, client_id: str) -> None:
        await self.server.notify_catalog_changed()

    async def reload_specs(self) -> None:
        """Rebuild the specs from the store and bring the upstream connections in line."""
        async with self.store.read() as session:
            rows = await mcp_repos.list_clients(session)
            raw: Any = await repos.get_setting(session, TOOL_MANAGER_SETTING, None)
        config = ToolManagerConfig.model_validate(raw or {})
        if config != self.tool_config:
            self.tool_config = config
            self.upstreams.tool_config = config
            self.executor.timeout = config.tool_execution_timeout
            self.agent.max_depth = config.max_agent_depth
        specs = build_specs(self.box, rows, config.tool_sync_interval)
        self.catalog.update_specs(specs)
        await self.upstreams.sync(specs)
