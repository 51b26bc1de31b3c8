"""Tables of the MCP gateway and of Heimdall as an OAuth client of upstream MCP servers.

Secret-bearing columns end in ``_encrypted`` (AES-GCM via ``SecretBox``, the row id bound as
associated data) or ``_hash`` (keyed HMAC, for values we only compare, such as OAuth ``state``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from heimdall.store.base import Base, Timestamps


class MCPClientRow(Timestamps, Base):
    __tablename__ = "mcp_clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    connection_type: Mapped[str] = mapped_column(String(16))
    #: URL for http/sse (may be an ``env.NAME`` reference).
    connection_string: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: ``{"command", "args", "cwd"}``; the environment is encrypted separately.
    stdio_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    stdio_env_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    auth_type: Mapped[str] = mapped_column(String(32), default="none")
    oauth_config_id: Mapped[str | None] = mapped_column(
        ForeignKey("oauth_configs.id", ondelete="SET NULL"), nullable=True, index=True
    )
    #: The declared ``oauth_config`` (OAuthSettings JSON), encrypted: it may hold a client secret. Lets a client
    #: declared in config.json start its verification login later.
    oauth_settings_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: JSON object of static headers (values may be ``env.NAME``), encrypted.
    headers_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    allowed_extra_headers: Mapped[list[str]] = mapped_column(JSON, default=list)
    tools_to_execute: Mapped[list[str]] = mapped_column(JSON, default=list)
    tools_to_auto_execute: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_ping_available: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Seconds between tool list refreshes; 0 uses the gateway default.
    tool_sync_interval: Mapped[int] = mapped_column(Integer, default=0)
    allow_on_all_virtual_keys: Mapped[bool] = mapped_column(Boolean, default=False)
    #: ``active`` or ``pending_verification`` (declared in config.json, waiting for the admin's test login).
    status: Mapped[str] = mapped_column(String(32), default="active")
    #: Tools, prompts and resources found by the verification login, for clients with no shared connection.
    discovered: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class OAuthConfigRow(Timestamps, Base):
    """An upstream OAuth client registration and one authorization attempt's state (reference.md §3).

    For ``auth_type: oauth`` it also points at the server-level token; for ``per_user_oauth`` it is
    the template every user's login is built from.
    """

    __tablename__ = "oauth_configs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: ``server`` (auth_type oauth) or ``per_user`` (per_user_oauth template).
    purpose: Mapped[str] = mapped_column(String(16), default="server")
    server_url: Mapped[str] = mapped_column(Text, default="")
    client_id: Mapped[str] = mapped_column(Text, default="")
    client_secret_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32), default="none")
    authorize_url: Mapped[str] = mapped_column(Text, default="")
    token_url: Mapped[str] = mapped_column(Text, default="")
    registration_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    revocation_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    issuer: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: RFC 8707 resource indicator sent on authorize and token requests.
    resource: Mapped[str | None] = mapped_column(Text, nullable=True)
    redirect_uri: Mapped[str] = mapped_column(Text, default="")
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Keyed hash of the pending attempt's ``state``; cleared once used.
    state_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    code_verifier_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: pending | authorized | failed | expired | revoked | needs_reauth
    status: Mapped[str] = mapped_column(String(16), default="pending")
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    token_id: Mapped[str | None] = mapped_column(
        ForeignKey("oauth_tokens.id", ondelete="SET NULL"), nullable=True, index=True
    )
    #: The MCP client waiting for this login to complete (encrypted JSON: it may hold headers).
    pending_client_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: When the pending attempt's state expires.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OAuthTokenRow(Timestamps, Base):
    """A server-level upstream token (auth_type oauth, or an admin's verification login)."""

    __tablename__ = "oauth_tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    access_token_encrypted: Mapped[str] = mapped_column(Text)
    refresh_token_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    token_type: Mapped[str] = mapped_column(String(32), default="Bearer")
    #: None when the upstream gave no ``expires_in``: no known expiry (W17).
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    last_refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
