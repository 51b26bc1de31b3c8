"""Tables of per-user OAuth 2.1 for MCP.

Two halves:

* Heimdall as the OAuth 2.1 authorization server for ``/mcp`` (``as_*`` tables): registered
  clients, pending consent flows, authorization codes, grants and the tokens issued for them.
  Codes, tokens and browser secrets are stored only as keyed hashes (W8, W23).
* Each identity's own upstream tokens (``oauth_user_*``): one row per (MCP client, identity),
  encrypted, plus the short-lived upstream login attempts and handoff ids (W1, W9, W12, W18, W19).

An identity is a kind and a value: ``vk`` (a virtual key id), ``user`` (an authenticated user id)
or ``session`` (the ``session_key`` of an anonymous /mcp grant — the consent's "Skip").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from heimdall.store.base import Base, Timestamps

IDENTITY_KINDS = ("vk", "user", "session")


class ASClientRow(Timestamps, Base):
    """An MCP application registered with Heimdall (RFC 7591), or a Client ID Metadata Document's URL."""

    __tablename__ = "as_clients"

    client_id: Mapped[str] = mapped_column(String(2048), primary_key=True)
    client_name: Mapped[str] = mapped_column(String(255), default="")
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    response_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32), default="none")
    scope: Mapped[str | None] = mapped_column(Text, nullable=True)
    client_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    logo_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: True when ``client_id`` is an HTTPS URL whose metadata document we fetched (CIMD).
    is_metadata_document: Mapped[bool] = mapped_column(Boolean, default=False)
    metadata_fetched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ASPendingFlowRow(Timestamps, Base):
    """An authorization request waiting for the user's consent (15 minutes, bound to one browser)."""

    __tablename__ = "as_pending_flows"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(2048))
    redirect_uri: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    #: The client's ``state`` (its own opaque value, echoed back).
    state: Mapped[str | None] = mapped_column(Text, nullable=True)
    scope: Mapped[str] = mapped_column(Text, default="")
    resource: Mapped[str | None] = mapped_column(Text, nullable=True)
    browser_secret_hash: Mapped[str] = mapped_column(String(64))
    #: Keyed hash of the CSRF token the consent forms carry.
    csrf_hash: Mapped[str] = mapped_column(String(64))
    identity_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    identity: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: True once the user picked an identity or chose Skip.
    identity_chosen: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ASGrantRow(Timestamps, Base):
    """What a user consented to: a client acting for an identity on ``/mcp``. Tokens hang off a grant."""

    __tablename__ = "as_grants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(2048), index=True)
    identity_kind: Mapped[str] = mapped_column(String(16))
    #: The virtual key id or user id; for ``session`` grants the same value as ``session_key``.
    identity: Mapped[str] = mapped_column(String(255), index=True)
    scope: Mapped[str] = mapped_column(Text, default="")
    resource: Mapped[str] = mapped_column(Text)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: A grant with no refresh token use or access before this time is swept.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)


class ASCodeRow(Timestamps, Base):
    """An authorization code (RFC 6749 §4.1.2): single use, 5 minutes, stored as a keyed hash only."""

    __tablename__ = "as_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("as_grants.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(2048))
    redirect_uri: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ASTokenRow(Timestamps, Base):
    """An access or refresh token we issued (keyed hash only). Refresh tokens rotate: a used one that
    comes back is a replay, and revokes the whole grant (RFC 9700 §4.14.2)."""

    __tablename__ = "as_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("as_grants.id", ondelete="CASCADE"), index=True)
    #: ``access`` or ``refresh``.
    kind: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(Text, default="")
    #: The audience (RFC 8707 resource) an access token is bound to.
    audience: Mapped[str] = mapped_column(Text)
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)


class OAuthUserTokenRow(Timestamps, Base):
    """One identity's own upstream token for one MCP client (W18: unique, upserted)."""

    __tablename__ = "oauth_user_tokens"
    __table_args__ = (UniqueConstraint("mcp_client_id", "identity_kind", "identity"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    mcp_client_id: Mapped[str] = mapped_column(ForeignKey("mcp_clients.id", ondelete="CASCADE"), index=True)
    oauth_config_id: Mapped[str | None] = mapped_column(
        ForeignKey("oauth_configs.id", ondelete="SET NULL"), nullable=True
    )
    identity_kind: Mapped[str] = mapped_column(String(16))
    identity: Mapped[str] = mapped_column(String(255), index=True)
    access_token_encrypted: Mapped[str] = mapped_column(Text)
    refresh_token_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    token_type: Mapped[str] = mapped_column(String(32), default="Bearer")
    #: None: the upstream gave no ``expires_in``, so no known expiry (W17).
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: ``active`` or ``needs_reauth`` (a refresh failed for good: the next call becomes lazy auth).
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OAuthHandoffRow(Timestamps, Base):
    """A short-lived, single-use id in a link that starts an upstream login (W1): the gateway page it
    opens names the service and the identity, binds the attempt to the browser, then redirects upstream."""

    __tablename__ = "oauth_handoffs"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    mcp_client_id: Mapped[str] = mapped_column(ForeignKey("mcp_clients.id", ondelete="CASCADE"))
    identity_kind: Mapped[str] = mapped_column(String(16))
    identity: Mapped[str] = mapped_column(String(255))
    #: Set when the link came from a consent flow (back to its services page after the login).
    flow_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class OAuthUserAttemptRow(Timestamps, Base):
    """One upstream authorization attempt for an identity (the reference's ``oauth_user_sessions``)."""

    __tablename__ = "oauth_user_attempts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    mcp_client_id: Mapped[str] = mapped_column(ForeignKey("mcp_clients.id", ondelete="CASCADE"))
    oauth_config_id: Mapped[str | None] = mapped_column(
        ForeignKey("oauth_configs.id", ondelete="SET NULL"), nullable=True
    )
    identity_kind: Mapped[str] = mapped_column(String(16))
    identity: Mapped[str] = mapped_column(String(255))
    #: The redirect URI sent upstream, reused verbatim in the code exchange (W9).
    redirect_uri: Mapped[str] = mapped_column(Text)
    code_verifier_encrypted: Mapped[str] = mapped_column(Text)
    #: Keyed hash of the per-attempt cookie that binds the callback to the browser that started it (W12).
    browser_binding_hash: Mapped[str] = mapped_column(String(64))
    flow_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: pending | exchanging (the code is being redeemed) | authorized | failed | expired
    status: Mapped[str] = mapped_column(String(16), default="pending")
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
