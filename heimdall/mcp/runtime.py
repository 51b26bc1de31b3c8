"""Runtime types of the MCP gateway and the seam that decides which credential each upstream call uses.

Every call to an upstream MCP server (connect, list, call) goes through ``CredentialResolver``:
``none`` and ``headers`` clients get their static headers, ``oauth`` clients the server-level token
(refreshed when needed), and ``per_user_oauth`` clients the calling identity's own token — or an
``AuthRequired`` error that the front ends turn into lazy auth.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from heimdall.config.allowlists import AllowList


class ClientState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    ERROR = "error"
    #: Declared in config.json with per_user_oauth and not yet verified by an admin's test login.
    PENDING_VERIFICATION = "pending_verification"
    #: A per-user client: no shared connection; tools come from the verification login.
    PER_USER = "per_user"


@dataclass(frozen=True, slots=True)
class StdioSpec:
    command: str
    args: tuple[str, ...]
    env: dict[str, str]
    cwd: str | None = None


@dataclass(frozen=True, slots=True)
class MCPClientSpec:
    """A configured upstream with every ``env.NAME`` reference resolved; rebuilt when the store changes."""

    id: str
    name: str
    connection_type: str
    url: str | None
    stdio: StdioSpec | None
    auth_type: str
    headers: dict[str, str]
    allowed_extra_headers: AllowList
    tools_to_execute: AllowList
    tools_to_auto_execute: AllowList
    is_ping_available: bool
    #: Effective seconds between tool list refreshes.
    tool_sync_interval: float
    allow_on_all_virtual_keys: bool
    oauth_config_id: str | None = None
    status: str = "active"
    #: Persisted ``{"tools": [...], "prompts": [...], "resources": [...]}`` (MCP wire dicts) for per-user clients.
    discovered: dict[str, Any] | None = None

    @property
    def shared_connection(self) -> bool:
        """Whether one connection serves every caller (all auth types but per-user OAuth)."""
        return self.auth_type != "per_user_oauth"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling an MCP operation, on either gateway.

    ``user_id`` is set only from an authenticated source (an OIDC login, or a caller whose virtual
    key may assert user ids); ``session_key`` identifies an anonymous /mcp OAuth session (Skip).
    """

    vk_id: str | None = None
    vk_name: str | None = None
    user_id: str | None = None
    session_key: str | None = None
    #: Request headers (lower-cased names) that may be forwarded per ``allowed_extra_headers``.
    request_headers: dict[str, str] = field(default_factory=dict)
    on_mcp_gateway: bool = False

    @property
    def has_identity(self) -> bool:
        return bool(self.user_id or self.vk_id or self.session_key)


class MCPGatewayError(Exception):
    """Base of MCP gateway errors; ``message`` is safe to show to the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UpstreamUnavailableError(MCPGatewayError):
    """The upstream is not connected or the call failed at the transport level."""


class ToolNotFoundError(MCPGatewayError):
    """No such tool, or not one the caller may use."""


class AuthRequired(MCPGatewayError):
    """The caller has no usable credential for a per-user upstream; ``authorize_url`` starts the login."""

    def __init__(
        self, *, mcp_client_id: str, mcp_client_name: str, authorize_url: str, session_id: str, message: str
    ) -> None:
        super().__init__(message)
        self.mcp_client_id = mcp_client_id
        self.mcp_client_name = mcp_client_name
        self.authorize_url = authorize_url
        self.session_id = session_id

    def payload(self) -> dict[str, str]:
        """The ``mcp_auth_required`` object of reference.md §2.7."""
        return {
            "mcp_client_id": self.mcp_client_id,
            "mcp_client_name": self.mcp_client_name,
            "authorize_url": self.authorize_url,
            "session_id": self.session_id,
            "message": self.message,
        }


class CredentialUnavailable(MCPGatewayError):
    """A shared credential is missing or no longer valid (e.g. the server-level OAuth token needs re-authorization)."""


class CredentialResolver(Protocol):
    async def headers_for(self, spec: MCPClientSpec, caller: Caller | None) -> dict[str, str]:
        """Headers (credential included) for one upstream HTTP request.

        ``caller`` is None for the gateway's own shared connection (connect, sync, list_changed).

        Raises:
            AuthRequired: a per-user upstream and no usable token for this caller.
            CredentialUnavailable: the shared credential is missing or needs re-authorization.
        """
        ...

    async def unauthorized(self, spec: MCPClientSpec, caller: Caller | None, www_authenticate: str | None) -> bool:
        """The upstream answered 401 (or 403 insufficient_scope): refresh if possible.

        Returns True when a retry with fresh headers may succeed.
        """
        ...


class StaticCredentials:
    """``none`` and ``headers`` auth: the client's static headers, the same for every caller."""

    async def headers_for(self, spec: MCPClientSpec, caller: Caller | None) -> dict[str, str]:
        return dict(spec.headers)

    async def unauthorized(self, spec: MCPClientSpec, caller: Caller | None, www_authenticate: str | None) -> bool:
        return False


def forwarded_headers(spec: MCPClientSpec, caller: Caller | None) -> dict[str, str]:
    """Request headers the admin allowed to pass through to this upstream (``allowed_extra_headers``)."""
    if caller is None or not spec.allowed_extra_headers:
        return {}
    allowed = spec.allowed_extra_headers
    if allowed.all:
        blocked = {"authorization", "cookie", "host", "content-length", "x-bf-vk", "x-bf-virtual-key", "x-api-key"}
        return {name: value for name, value in caller.request_headers.items() if name not in blocked}
    wanted = {name.lower() for name in allowed.names}
    return {name: value for name, value in caller.request_headers.items() if name in wanted}
