"""Async repository functions for the request log (``request_logs``); the caller owns the transaction.

Row ids sort like the time the request arrived (``new_log_id``: 16 hex digits of nanoseconds since
the epoch, then 16 random ones), so "newest first" and the paging cursor both walk the primary key
index, and pruning by count finds its boundary there too.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Table, and_, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.store.ui_models import RequestLogRow

StatusClass = Literal["ok", "error"]

_TABLE: Table = RequestLogRow.__table__  # type: ignore[assignment]


def new_log_id(arrived_ns: int) -> str:
    """A row id that sorts by arrival time (ties, within a nanosecond, in random order)."""
    return f"{arrived_ns:016x}{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class LogFilters:
    """What the Logs page narrows the list by; ``None`` means "any"."""

    #: Exact caller (virtual key name or user id).
    caller: str | None = None
    #: Exact model, matched against both the requested and the resolved model.
    model: str | None = None
    #: ``ok``: answered below 400 without an error; ``error``: the rest (a broken stream counts as an error).
    status: StatusClass | None = None
    #: Exact route, e.g. ``/v1/chat/completions``.
    endpoint: str | None = None


async def insert_logs(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows (column name to value, ``id`` and ``created_at`` included) in one executemany."""
    if rows:
        await session.execute(insert(_TABLE), list(rows))


async def list_logs(
    session: AsyncSession, filters: LogFilters, *, limit: int, before: str | None = None
) -> Sequence[RequestLogRow]:
    """Up to ``limit`` rows, newest first, older than the row ``before`` (a row id) when given."""
    query = select(RequestLogRow).order_by(RequestLogRow.id.desc()).limit(limit)
    if before is not None:
        query = query.where(RequestLogRow.id < before)
    if filters.caller is not None:
        query = query.where(RequestLogRow.caller == filters.caller)
    if filters.model is not None:
        query = query.where(
            or_(RequestLogRow.model_requested == filters.model, RequestLogRow.model_resolved == filters.model)
        )
    if filters.endpoint is not None:
        query = query.where(RequestLogRow.endpoint == filters.endpoint)
    if filters.status == "ok":
        query = query.where(and_(RequestLogRow.status_code < 400, RequestLogRow.error.is_(None)))
    elif filters.status == "error":
        query = query.where(or_(RequestLogRow.status_code >= 400, RequestLogRow.error.is_not(None)))
    return (await session.scalars(query)).all()


async def get_log(session: AsyncSession, log_id: str) -> RequestLogRow | None:
    return await session.get(RequestLogRow, log_id)


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def prune_logs(session: AsyncSession, *, older_than: datetime, keep: int) -> int:
    """Delete rows created before ``older_than``, then all but the newest ``keep``; returns rows deleted.

    Both deletes are range deletes on an index (``created_at``, then the primary key below the
    ``keep``-th newest id), so the cost follows the rows removed, not a scan of the table.
    """
    removed = _count(await session.execute(delete(RequestLogRow).where(RequestLogRow.created_at < older_than)))
    boundary = await session.scalar(
        select(RequestLogRow.id).order_by(RequestLogRow.id.desc()).offset(max(keep, 0)).limit(1)
    )
    if boundary is not None:
        removed += _count(await session.execute(delete(RequestLogRow).where(RequestLogRow.id <= boundary)))
    return removed
