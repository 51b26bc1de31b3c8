"""Async repositories. They read and write rows; the caller owns the transaction (commit happens once,
at the end of the request or command, in ``Store.transaction``)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from heimdall.crypto import SecretBox
from heimdall.store.models import (
    AdminCredentialRow,
    GatewaySettingRow,
    ProviderKeyRow,
    ProviderRow,
    VirtualKeyRow,
)

VIRTUAL_KEY_PREFIX = "sk-bf-"
STORE_VERSION_KEY = "store_version"
CLIENT_CONFIG_KEY = "client_config"
PER_USER_OAUTH_KEY = "per_user_oauth"


def new_virtual_key_value() -> str:
    return VIRTUAL_KEY_PREFIX + secrets.token_urlsafe(32)


def value_hint(value: str) -> str:
    return f"…{value[-4:]}" if len(value) >= 12 else "…"


class Store:
    """The engine, the session factory and the secret box, handed to every repository call."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], box: SecretBox) -> None:
        self.engine = engine
        self.sessions = sessions
        self.box = box

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits on success, rolls back on any exception."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session


#: PostgreSQL's SQLSTATEs for a transaction it aborted to break a deadlock or a serialization conflict.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def is_retryable_conflict(error: BaseException) -> bool:
    """The database rolled the transaction back because of a concurrent one; running it again is safe."""
    for candidate in (getattr(error, "orig", None), error.__cause__, getattr(error.__cause__, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if code in _RETRYABLE_SQLSTATES:
            return True
    return False


# --- store version (cross-process change detection) -------------------------------------------


async def bump_version(session: AsyncSession) -> None:
    row = await session.get(GatewaySettingRow, STORE_VERSION_KEY, with_for_update=True)
    if row is None:
        session.add(GatewaySettingRow(key=STORE_VERSION_KEY, value=1))
    else:
        row.value = int(row.value) + 1


async def get_version(session: AsyncSession) -> int:
    row = await session.get(GatewaySettingRow, STORE_VERSION_KEY)
    return int(row.value) if row else 0


# --- settings --------------------------------------------------------------------------------


async def get_setting(session: AsyncSession, key: str, default: Any = None) -> Any:
    row = await session.get(GatewaySettingRow, key)
    return row.value if row else default


async def set_setting(session: AsyncSession, key: str, value: Any) -> None:
    row = await session.get(GatewaySettingRow, key)
    if row is None:
        session.add(GatewaySettingRow(key=key, value=value))
    else:
        row.value = value
    await bump_version(session)


# --- providers and keys ----------------------------------------------------------------------


async def list_providers(session: AsyncSession) -> Sequence[ProviderRow]:
    return (await session.scalars(select(ProviderRow).order_by(ProviderRow.position, ProviderRow.name))).all()


async def list_keys(session: AsyncSession, provider_name: str | None = None) -> Sequence[ProviderKeyRow]:
    query = select(ProviderKeyRow).order_by(ProviderKeyRow.provider_name, ProviderKeyRow.position, ProviderKeyRow.id)
    if provider_name is not None:
        query = query.where(ProviderKeyRow.provider_name == provider_name)
    return (await session.scalars(query)).all()


async def get_provider(session: AsyncSession, name: str) -> ProviderRow | None:
    return await session.get(ProviderRow, name)


async def upsert_provider(session: AsyncSession, name: str, kind: str, network_config: dict[str, Any]) -> ProviderRow:
    row = await session.get(ProviderRow, name)
    if row is None:
        count = len(await list_providers(session))
        row = ProviderRow(name=name, kind=kind, network_config=network_config, position=count)
        session.add(row)
    else:
        row.kind = kind
        row.network_config = network_config
    await bump_version(session)
    return row


async def delete_provider(session: AsyncSession, name: str) -> bool:
    await session.execute(delete(ProviderKeyRow).where(ProviderKeyRow.provider_name == name))
    result = await session.execute(delete(ProviderRow).where(ProviderRow.name == name))
    await bump_version(session)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def get_key(session: AsyncSession, key_id: str) -> ProviderKeyRow | None:
    return await session.get(ProviderKeyRow, key_id)


async def upsert_key(
    session: AsyncSession,
    box: SecretBox,
    *,
    provider_name: str,
    key_id: str,
    name: str,
    value: str | None,
    models: list[str],
    weight: float,
    aliases: dict[str, str],
    azure_key_config: dict[str, Any] | None,
) -> ProviderKeyRow:
    """Insert or update a key; ``value=None`` keeps the stored secret (edits never need to resend it)."""
    row = await session.get(ProviderKeyRow, key_id)
    if row is None:
        if value is None:
            raise ValueError("a new key needs a value")
        position = len(await list_keys(session, provider_name))
        row = ProviderKeyRow(id=key_id, provider_name=provider_name, position=position, value_encrypted="")
        session.add(row)
    row.provider_name = provider_name
    row.name = name
    if value is not None:
        row.value_encrypted = box.encrypt(value, context=f"provider_key:{key_id}")
    row.models = models
    row.weight = weight
    row.aliases = aliases
    row.azure_key_config = azure_key_config
    await bump_version(session)
    return row


def decrypt_key_value(box: SecretBox, row: ProviderKeyRow) -> str:
    return box.decrypt(row.value_encrypted, context=f"provider_key:{row.id}")


async def delete_key(session: AsyncSession, key_id: str) -> bool:
    result = await session.execute(delete(ProviderKeyRow).where(ProviderKeyRow.id == key_id))
    await bump_version(session)
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- virtual keys ----------------------------------------------------------------------------


async def list_virtual_keys(session: AsyncSession) -> Sequence[VirtualKeyRow]:
    return (await session.scalars(select(VirtualKeyRow).order_by(VirtualKeyRow.name))).all()


async def get_virtual_key(session: AsyncSession, vk_id: str) -> VirtualKeyRow | None:
    return await session.get(VirtualKeyRow, vk_id)


async def get_virtual_key_by_name(session: AsyncSession, name: str) -> VirtualKeyRow | None:
    return (await session.scalars(select(VirtualKeyRow).where(VirtualKeyRow.name == name))).first()


async def get_virtual_key_by_value(session: AsyncSession, box: SecretBox, value: str) -> VirtualKeyRow | None:
    query = select(VirtualKeyRow).where(VirtualKeyRow.value_hash == box.lookup_hash(value))
    return (await session.scalars(query)).first()


async def save_virtual_key(session: AsyncSession, row: VirtualKeyRow) -> VirtualKeyRow:
    session.add(row)
    await session.flush()
    await bump_version(session)
    return row


async def delete_virtual_key(session: AsyncSession, vk_id: str) -> bool:
    result = await session.execute(delete(VirtualKeyRow).where(VirtualKeyRow.id == vk_id))
    await bump_version(session)
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- admin credential ------------------------------------------------------------------------


async def admin_credential_exists(session: AsyncSession) -> bool:
    return (await session.scalars(select(AdminCredentialRow.id).limit(1))).first() is not None


async def admin_token_matches(session: AsyncSession, box: SecretBox, token: str) -> bool:
    query = select(AdminCredentialRow.id).where(AdminCredentialRow.token_hash == box.lookup_hash(token))
    return (await session.scalars(query)).first() is not None


async def set_admin_token(session: AsyncSession, box: SecretBox, token: str) -> None:
    await session.execute(delete(AdminCredentialRow))
    session.add(AdminCredentialRow(id="admin", token_hash=box.lookup_hash(token)))
