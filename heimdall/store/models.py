"""Tables of the LLM gateway and governance. Secrets are stored encrypted or as keyed hashes only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from heimdall.store.base import Base, Timestamps


class ProviderRow(Timestamps, Base):
    __tablename__ = "providers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    network_config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    position: Mapped[int] = mapped_column(Integer, default=0)


class ProviderKeyRow(Timestamps, Base):
    __tablename__ = "provider_keys"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    provider_name: Mapped[str] = mapped_column(ForeignKey("providers.name", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    #: AES-GCM ciphertext of the key or of its ``env.NAME`` reference.
    value_encrypted: Mapped[str] = mapped_column(Text)
    models: Mapped[list[str]] = mapped_column(JSON, default=list)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    aliases: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    azure_key_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class VirtualKeyRow(Timestamps, Base):
    __tablename__ = "virtual_keys"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    #: HMAC-SHA256 of the key value; the value itself is never stored.
    value_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The last four characters, to tell keys apart in lists.
    value_hint: Mapped[str] = mapped_column(String(16), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    provider_configs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    mcp_configs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    can_assert_user_ids: Mapped[bool] = mapped_column(Boolean, default=False)


class GatewaySettingRow(Timestamps, Base):
    """Small key/value settings: the ``client`` section of config.json and the store's change counter."""

    __tablename__ = "gateway_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class AdminCredentialRow(Timestamps, Base):
    __tablename__ = "admin_credentials"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
