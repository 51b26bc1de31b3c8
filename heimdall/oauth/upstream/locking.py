"""A refresh lock per row that also holds across processes, so two refreshes of one grant never race.

Rotating refresh tokens are single-use: if two processes redeem the same one, the second gets
``invalid_grant`` and, at careful servers, the whole grant is revoked. So whoever refreshes holds:

- in this process, an ``asyncio.Lock`` per row (waiters queue here, not in the database);
- PostgreSQL: ``SELECT … FOR UPDATE`` on the row, held by the transaction that writes the result;
- SQLite: an exclusive ``flock`` on ``<database>.oauth-refresh.lock``. SQLite has no row locks and a
  write transaction would stall every other writer for the length of an HTTP call; the file lock
  serializes only refreshes.

Callers must re-read the row after acquiring, and skip the refresh when another holder already did it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.store.base import Base
from heimdall.store.repos import Store

RowT = TypeVar("RowT", bound=Base)

#: Longest wait for another process's refresh before giving up (it is bounded by HTTP timeouts too).
LOCK_TIMEOUT = 120.0


class RefreshLockTimeout(Exception):
    """Another holder kept the lock for longer than ``LOCK_TIMEOUT``."""


def _lock_file(store: Store) -> str | None:
    url = store.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return f"{url.database}.oauth-refresh.lock"


@asynccontextmanager
async def _file_lock(path: str, wait: float) -> AsyncIterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RefreshLockTimeout(f"waited {wait:.0f}s for {path}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


class RowLocks:
    """Hands out the refresh lock of one row; one instance per store and process (locks are kept per row id)."""

    def __init__(self, store: Store, *, timeout: float = LOCK_TIMEOUT) -> None:
        self.store = store
        self.timeout = timeout
        self._local: dict[str, asyncio.Lock] = {}
        self._file = _lock_file(store)

    @asynccontextmanager
    async def locked(self, model: type[RowT], row_id: str) -> AsyncIterator[tuple[AsyncSession, RowT | None]]:
        """Hold the lock of ``model`` row ``row_id`` and yield a transaction with the row freshly read.

        Changes made to the row in that session commit when the block exits normally.
        """
        lock = self._local.setdefault(f"{model.__tablename__}:{row_id}", asyncio.Lock())
        async with lock:
            if self.store.engine.dialect.name == "postgresql":
                async with self.store.transaction() as session:
                    row = await session.get(model, row_id, with_for_update=True, populate_existing=True)
                    yield session, row
            elif self._file is not None:
                async with _file_lock(self._file, self.timeout), self.store.transaction() as session:
                    yield session, await session.get(model, row_id, populate_existing=True)
            else:
                async with self.store.transaction() as session:
                    yield session, await session.get(model, row_id, populate_existing=True)
