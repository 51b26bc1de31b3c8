"""The OpenID Connect login's own table: one row per sign-in attempt at the admin's OIDC provider.

An attempt lives from ``/oauth/consent/oidc/start`` (or ``/oauth/oidc/login``) to the callback: it
holds only a keyed hash of ``state`` and of the browser-binding cookie, and the nonce and PKCE
verifier encrypted (bound to the row). It is claimed once (``used``) and swept after ``expires_at``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from heimdall.store.base import Base, Timestamps


class OIDCLoginAttemptRow(Timestamps, Base):
    """One sign-in at the OIDC provider, bound to the browser that started it."""

    __tablename__ = "oidc_login_attempts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: Keyed hash of the per-attempt cookie the callback must present.
    binding_hash: Mapped[str] = mapped_column(String(64))
    nonce_encrypted: Mapped[str] = mapped_column(Text)
    code_verifier_encrypted: Mapped[str] = mapped_column(Text)
    #: The provider and client the attempt started with: a configuration change in between fails it.
    issuer: Mapped[str] = mapped_column(Text)
    client_id: Mapped[str] = mapped_column(Text)
    #: The redirect URI sent to the provider, sent again verbatim in the code exchange.
    redirect_uri: Mapped[str] = mapped_column(Text)
    #: Set for a consent-flow sign-in: the flow whose identity the login sets.
    flow_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Set for a sign-in outside a consent flow: the relative path to return to.
    next_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
