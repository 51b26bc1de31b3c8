"""The shape of an MCP client (an upstream MCP server connection), shared by config.json and the API.

Field names follow the reference system (``MCPClientConfig``). Tools are exposed as
``<name>-<tool>``, which is why names may not contain hyphens or spaces.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from heimdall.config.allowlists import validate_allowlist

ConnectionType = Literal["http", "sse", "stdio"]
AuthType = Literal["none", "headers", "oauth", "per_user_oauth"]
CLIENT_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class StdioConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    command: str = Field(min_length=1, description="Executable to start (found on PATH).")
    args: list[str] = Field(default_factory=list)
    envs: dict[str, str] = Field(
        default_factory=dict, alias="envs", description="Extra environment; values may be env.NAME references."
    )
    cwd: str | None = None


class OAuthSettings(BaseModel):
    """Upstream OAuth client settings; blanks are discovered (RFC 9728, RFC 8414) or registered (RFC 7591)."""

    model_config = ConfigDict(extra="forbid")
    client_id: str | None = None
    client_secret: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    registration_url: str | None = None
    scopes: list[str] | None = None

    @field_validator("authorize_url", "token_url", "registration_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL")
        return value or None


class MCPClientConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    client_id: str | None = Field(default=None, description="Stable id; generated when omitted.")
    name: str = Field(description="Letters, digits and underscores; tools are exposed as <name>-<tool>.")
    connection_type: ConnectionType
    connection_string: str | None = Field(default=None, description="Server URL (http, sse), or env.NAME.")
    stdio_config: StdioConfig | None = None
    auth_type: AuthType = "none"
    oauth_config: OAuthSettings | None = None
    oauth_config_id: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="Static headers; values may be env.NAME.")
    allowed_extra_headers: list[str] = Field(
        default_factory=list, description='Request headers forwarded to this server: names, or ["*"].'
    )
    tools_to_execute: list[str] = Field(
        default_factory=lambda: ["*"], description='Tools exposed: ["*"] all (the default), [] none, or names.'
    )
    tools_to_auto_execute: list[str] = Field(
        default_factory=list, description="Tools agent mode may run without asking the caller (a subset)."
    )
    is_ping_available: bool = True
    tool_sync_interval: int = Field(default=0, ge=0, le=86_400, description="Seconds; 0 uses the gateway default.")
    allow_on_all_virtual_keys: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not CLIENT_NAME.match(value):
            raise ValueError(
                "name may only contain ASCII letters, digits and underscores (no spaces or hyphens: "
                "tools are exposed as <name>-<tool>)"
            )
        return value

    @field_validator("tools_to_execute", "tools_to_auto_execute", "allowed_extra_headers")
    @classmethod
    def _lists(cls, value: list[str]) -> list[str]:
        return validate_allowlist(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MCPClientConfig:
        if self.connection_type in ("http", "sse"):
            url = self.connection_string
            if not url:
                raise ValueError(f"connection_string is required for connection_type {self.connection_type!r}")
            if not (url.startswith("env.") or re.match(r"^https?://[^/\s]+", url)):
                raise ValueError("connection_string must be an http(s) URL or an env.NAME reference")
            if self.stdio_config is not None:
                raise ValueError("stdio_config is only for connection_type 'stdio'")
        else:
            if self.stdio_config is None:
                raise ValueError("stdio_config (command, args) is required for connection_type 'stdio'")
            if self.auth_type in ("oauth", "per_user_oauth"):
                raise ValueError(f"auth_type {self.auth_type!r} needs an http or sse connection")
        if self.auth_type == "per_user_oauth" and self.oauth_config is None:
            raise ValueError("OAuth configuration is required when auth_type is 'per_user_oauth'")
        if self.auth_type == "headers" and not self.headers:
            raise ValueError("auth_type 'headers' needs at least one header")
        auto = set(self.tools_to_auto_execute) - {"*"}
        if "*" not in self.tools_to_execute and not auto <= set(self.tools_to_execute):
            missing = sorted(auto - set(self.tools_to_execute))
            raise ValueError(f"tools_to_auto_execute must be a subset of tools_to_execute; not allowed: {missing}")
        if "*" in self.tools_to_auto_execute and "*" not in self.tools_to_execute:
            raise ValueError('tools_to_auto_execute ["*"] needs tools_to_execute ["*"]')
        return self


class ToolManagerConfig(BaseModel):
    """``mcp.tool_manager_config``: agent mode and tool execution limits."""

    model_config = ConfigDict(extra="forbid")
    max_agent_depth: int = Field(default=10, ge=1, le=50)
    tool_execution_timeout: float = Field(default=30, gt=0, le=3600, description="Seconds per tool call.")
    tool_sync_interval: int = Field(default=300, ge=10, le=86_400, description="Default seconds between tool syncs.")
