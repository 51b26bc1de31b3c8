"""Admin sessions of the web UI (``admin_sessions``): open, look up, close, sweep."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.store.models import AdminCredentialRow
from heimdall.store.ui_models import AdminSessionRow


async def current_credential_hash(session: AsyncSession) -> str | None:
    return (await session.scalars(select(AdminCredentialRow.token_hash).limit(1))).first()


async def add_session(session: AsyncSession, session_hash: str, credential_hash: str, expires_at: datetime) -> None:
    session.add(AdminSessionRow(id=session_hash, credential_hash=credential_hash, expires_at=expires_at))


async def live_session(session: AsyncSession, session_hash: str, now: datetime) -> AdminSessionRow | None:
    query = select(AdminSessionRow).where(AdminSessionRow.id == session_hash, AdminSessionRow.expires_at > now)
    return (await session.scalars(query)).first()


async def delete_session(session: AsyncSession, session_hash: str) -> None:
    await session.execute(delete(AdminSessionRow).where(AdminSessionRow.id == session_hash))


async def delete_expired_sessions(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(delete(AdminSessionRow).where(AdminSessionRow.expires_at <= now))
    return int(result.rowcount)  # type: ignore[attr-defined]
