"""What the MCP server pages show: state badges, connection summaries, masked secrets, tool rows.

Everything here is built from the management API's redacted ``MCPClientView``: secret header and
environment values arrive as ``"<redacted>"`` and are shown as dots; ``env.NAME`` references are
not secrets and are shown as they are.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from heimdall.api.mcp_client_views import REDACTED, MCPClientView
from heimdall.ui.pages.mcp_logins import Login

BadgeKind = Literal["success", "warning", "error", "neutral"]
MASK = "••••••••"

CONNECTION_LABELS = {"http": "HTTP (streamable)", "sse": "SSE", "stdio": "stdio (local command)"}
AUTH_LABELS = {
    "none": "None",
    "headers": "Headers",
    "oauth": "OAuth (one shared sign-in)",
    "per_user_oauth": "OAuth per user",
}
_STATES: dict[str, tuple[str, BadgeKind]] = {
    "connected": ("Connected", "success"),
    "connecting": ("Connecting", "neutral"),
    "disconnected": ("Disconnected", "neutral"),
    "error": ("Error", "error"),
    "pending_verification": ("Pending verification", "warning"),
    "per_user": ("Ready · per-user sign-in", "success"),
    "pending_oauth": ("Pending sign-in", "warning"),
    "needs_reauth": ("Needs sign-in again", "warning"),
    "failed": ("Sign-in failed", "error"),
    "expired": ("Sign-in expired", "warning"),
    "authorized": ("Signed in · finish setup", "warning"),
}


@dataclass(frozen=True, slots=True)
class StateBadge:
    key: str
    label: str
    kind: BadgeKind
    reason: str | None = None


def badge(key: str, reason: str | None = None) -> StateBadge:
    label, kind = _STATES.get(key, (key.replace("_", " ").capitalize(), "neutral"))
    return StateBadge(key, label, kind, reason)


def server_state(view: MCPClientView, oauth_status: tuple[str, str | None] | None) -> StateBadge:
    """The live state; a shared OAuth server without a working sign-in (its refresh failed for good, or a
    new sign-in was started and not finished) needs the admin's sign-in again."""
    if view.config.get("auth_type") == "oauth" and oauth_status is not None and oauth_status[0] != "authorized":
        status, reason = oauth_status
        return badge("needs_reauth", reason or f"the shared sign-in is {status}")
    if view.state == "per_user":
        return badge("per_user")
    if view.state == "pending_verification":
        return badge("pending_verification", "Waiting for an admin's test sign-in.")
    return badge(view.state, view.state_reason)


def login_state(login: Login) -> StateBadge:
    progress = login.progress
    if progress == "waiting":
        return badge("pending_oauth", "Waiting for the admin's sign-in.")
    if progress in ("failed", "expired"):
        return badge(progress, login.message)
    return badge(progress)


def target_of(config: Mapping[str, Any]) -> str:
    """The server's URL, or its command line for stdio."""
    if config.get("connection_type") == "stdio":
        stdio = config.get("stdio_config") or {}
        return shlex.join([str(stdio.get("command", "")), *[str(arg) for arg in stdio.get("args") or []]])
    return str(config.get("connection_string") or "")


def masked(values: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """``(name, shown value)`` pairs: secret values as dots, ``env.NAME`` references as they are."""
    return [(name, MASK if value == REDACTED else value) for name, value in (values or {}).items()]


@dataclass(frozen=True, slots=True)
class ServerRow:
    """One line of the list: a saved server, or one waiting for its first sign-in."""

    name: str
    href: str
    connection_type: str
    target: str
    auth_type: str
    state: StateBadge
    tool_count: int | None

    @property
    def connection_label(self) -> str:
        return CONNECTION_LABELS.get(self.connection_type, self.connection_type)

    @property
    def auth_label(self) -> str:
        return AUTH_LABELS.get(self.auth_type, self.auth_type)


def server_row(view: MCPClientView, oauth_status: tuple[str, str | None] | None) -> ServerRow:
    config = view.config
    return ServerRow(
        name=str(config["name"]),
        href=f"/mcp-servers/{config['client_id']}",
        connection_type=str(config["connection_type"]),
        target=target_of(config),
        auth_type=str(config.get("auth_type") or "none"),
        state=server_state(view, oauth_status),
        tool_count=view.tool_count,
    )


def login_row(login: Login) -> ServerRow:
    return ServerRow(
        name=login.name,
        href=login.href,
        connection_type="http",
        target=login.server_url,
        auth_type=login.auth_type,
        state=login_state(login),
        tool_count=None,
    )


@dataclass(frozen=True, slots=True)
class ToolRow:
    name: str
    description: str
    allowed: bool
    auto: bool


def allows(names: list[str], tool: str) -> bool:
    return "*" in names or tool in names


def tool_rows(view: MCPClientView) -> list[ToolRow]:
    allowed = list(view.config.get("tools_to_execute") or [])
    auto = list(view.config.get("tools_to_auto_execute") or [])
    rows = []
    for tool in sorted(view.tools, key=lambda tool: tool.name):
        usable = allows(allowed, tool.name)
        rows.append(ToolRow(tool.name, tool.description, usable, usable and allows(auto, tool.name)))
    return rows


def allowed_summary(names: list[str]) -> str:
    if "*" in names:
        return "All tools, including ones the server adds later"
    if not names:
        return "None"
    return ", ".join(names)
