"""Housekeeping job for the sweeper (W25): used or expired connection links, expired login attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.store.per_user_models import OAuthHandoffRow, OAuthUserAttemptRow


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def sweep_upstream_logins(session: AsyncSession, now: datetime) -> int:
    """Delete handoffs that were used or expired and attempts past their lifetime; returns the rows removed.

    Register with ``Sweeper.add_job("upstream_logins", sweep_upstream_logins)``.
    """
    handoffs = await session.execute(
        delete(OAuthHandoffRow).where(or_(OAuthHandoffRow.used.is_(True), OAuthHandoffRow.expires_at < now))
    )
    attempts = await session.execute(delete(OAuthUserAttemptRow).where(OAuthUserAttemptRow.expires_at < now))
    return _count(handoffs) + _count(attempts)
