"""Run a coroutine to the end from synchronous test code, whatever loop the calling thread has.

Playwright's sync API keeps an event loop running in the test's thread while a browser is open, and
``asyncio.run`` refuses to start there; a worker thread has no loop, so the coroutine gets its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Executable

from heimdall.store.engine import create_engine

T = TypeVar("T")


def run_async(work: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result(timeout=timeout)


def run_sql(db_url: str, statement: Executable) -> list[tuple[Any, ...]]:
    """Run one statement on a gateway's database from outside it; rows for a SELECT."""

    async def run() -> list[tuple[Any, ...]]:
        engine = create_engine(db_url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(statement)
                return [tuple(row) for row in result.all()] if result.returns_rows else []
        finally:
            await engine.dispose()

    return run_async(run())
