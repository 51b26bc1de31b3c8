"""Async repository functions for the request log (``request_logs``); the caller owns the transaction.

Row ids sort like the time the request arrived (``new_log_id``: 16 hex digits of nanoseconds since
the epoch, then 16 random ones), so "newest first" and the paging cursor both walk the primary key
index, and pruning by count finds its boundary there too.

On SQLite a batch is inserted with multi-row ``INSERT … VALUES (…), (…)`` statements rather than an
executemany. aiosqlite runs statements in a thread, and Python's sqlite3 releases the GIL around
every row it steps through; an executemany of a few hundred rows then takes the GIL back a few
hundred times from a busy event loop. Under load that made each batch take hundreds of
milliseconds and the gateway's CPU per request rise by a third; one statement per 500 rows does not.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import String, and_, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from heimdall.store.ui_models import RequestLogRow

StatusClass = Literal["ok", "error"]

#: Column lengths, so a long tool or model name is cut instead of failing the whole batch on PostgreSQL.
_LENGTHS = {
    column.name: column.type.length
    for column in RequestLogRow.__table__.columns
    if isinstance(column.type, String) and column.type.length
}


_COLUMNS = tuple(column.name for column in RequestLogRow.__table__.columns)
#: Rows per SQLite statement, largest first: a few fixed sizes, because sqlite3 keeps every distinct
#: statement it prepared (up to 128 per connection) and one with thousands of parameters is large. The
#: largest stays within the bound-parameter limit (32766 since SQLite 3.32, 999 before).
_SQLITE_MAX_PARAMS = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_SQLITE_CHUNKS = tuple(size for size in (256, 64, 16, 4, 1) if size * len(_COLUMNS) <= _SQLITE_MAX_PARAMS)
_SQLITE_ROW = "(" + ",".join("?" * len(_COLUMNS)) + ")"
_SQLITE_INSERT = f"INSERT INTO {RequestLogRow.__tablename__} ({','.join(_COLUMNS)}) VALUES "


def _sqlite_datetime(value: datetime) -> str:
    # SQLAlchemy's own storage format for DateTime on SQLite (UTC, as every time in the store).
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_json(value: Any) -> str:
    return orjson.dumps(value).decode()


#: What SQLAlchemy's column types would do to these columns' (non-null) values on SQLite.
_SQLITE_TYPES: dict[str, Callable[[Any], Any]] = {"created_at": _sqlite_datetime, "detail": _sqlite_json, "stream": int}
_SQLITE_CONVERSIONS = tuple((name, _SQLITE_TYPES.get(name)) for name in _COLUMNS)


def _sqlite_chunks(count: int) -> list[int]:
    """``count`` as a sum of ``_SQLITE_CHUNKS`` sizes, largest first."""
    sizes: list[int] = []
    for size in _SQLITE_CHUNKS:
        while count >= size:
            sizes.append(size)
            count -= size
    return sizes


async def _insert_sqlite(connection: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    start = 0
    for size in _sqlite_chunks(len(rows)):
        chunk = rows[start : start + size]
        start += size
        params: list[Any] = []
        for row in chunk:
            for name, convert in _SQLITE_CONVERSIONS:
                value = row.get(name)
                params.append(value if convert is None or value is None else convert(value))
        await connection.exec_driver_sql(_SQLITE_INSERT + ",".join([_SQLITE_ROW] * len(chunk)), tuple(params))


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
    """Insert rows (column name to value, every column included); strings longer than their column are cut."""
    if not rows:
        return
    for row in rows:
        for name, length in _LENGTHS.items():
            value = row.get(name)
            if isinstance(value, str) and len(value) > length:
                row[name] = value[:length]
    connection = await session.connection()
    if connection.dialect.name == "sqlite":
        await _insert_sqlite(connection, rows)
    else:
        await session.execute(insert(RequestLogRow), list(rows))


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
