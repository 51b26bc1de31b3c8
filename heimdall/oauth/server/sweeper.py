"""Housekeeping (W25): delete what the authorization server no longer needs.

Every ``per_user_oauth.sweep_interval`` seconds: expired consent flows, codes and tokens;
grants that were revoked or whose lifetime ended (with their tokens and codes); and registered
clients that were never used within ``UNUSED_CLIENT_DAYS`` of registering. Other modules can add
their own jobs (``add_job``), e.g. expired upstream login attempts. Every gateway process sweeps;
the deletes are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.gateway import Gateway
from heimdall.oauth.upstream.records import utcnow
from heimdall.store.per_user_models import ASClientRow, ASCodeRow, ASGrantRow, ASPendingFlowRow, ASTokenRow
from heimdall.store.repos import Store

log = logging.getLogger(__name__)

UNUSED_CLIENT_DAYS = 30
#: A job deletes what it owns as of ``now`` and returns how many rows it removed.
SweepJob = Callable[[AsyncSession, datetime], Awaitable[int]]


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def sweep(
    store: Store, now: datetime | None = None, jobs: list[tuple[str, SweepJob]] | None = None
) -> dict[str, int]:
    """One sweep; returns rows removed per kind."""
    now = now or utcnow()
    removed: dict[str, int] = {}
    async with store.transaction() as session:
        removed["flows"] = _count(
            await session.execute(delete(ASPendingFlowRow).where(ASPendingFlowRow.expires_at < now))
        )
        removed["codes"] = _count(await session.execute(delete(ASCodeRow).where(ASCodeRow.expires_at < now)))
        removed["tokens"] = _count(await session.execute(delete(ASTokenRow).where(ASTokenRow.expires_at < now)))
        ended = or_(ASGrantRow.revoked_at.is_not(None), ASGrantRow.expires_at < now)
        grant_ids = list((await session.scalars(select(ASGrantRow.id).where(ended))).all())
        if grant_ids:
            await session.execute(delete(ASTokenRow).where(ASTokenRow.grant_id.in_(grant_ids)))
            await session.execute(delete(ASCodeRow).where(ASCodeRow.grant_id.in_(grant_ids)))
            await session.execute(delete(ASGrantRow).where(ASGrantRow.id.in_(grant_ids)))
        removed["grants"] = len(grant_ids)
        stale = now - timedelta(days=UNUSED_CLIENT_DAYS)
        removed["clients"] = _count(
            await session.execute(
                delete(ASClientRow).where(ASClientRow.last_used_at.is_(None), ASClientRow.created_at < stale)
            )
        )
        for name, job in jobs or []:
            removed[name] = await job(session, now)
    return removed


class Sweeper:
    """Runs ``sweep`` in the background of a gateway process."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.jobs: list[tuple[str, SweepJob]] = []
        self._task: asyncio.Task[None] | None = None

    def add_job(self, name: str, job: SweepJob) -> None:
        self.jobs.append((name, job))

    async def sweep_once(self) -> dict[str, int]:
        removed = await sweep(self.gateway.store, jobs=self.jobs)
        if any(removed.values()):
            log.debug("swept %s", removed)
        return removed

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.gateway.snapshot.per_user_oauth.sweep_interval)
            try:
                await self.sweep_once()
            except Exception:
                log.exception("the per-user OAuth sweep failed; retrying at the next interval")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="oauth-server-sweeper")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
