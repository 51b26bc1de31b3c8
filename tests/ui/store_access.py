"""The running gateway's database, read and changed from a browser test.

Playwright's sync API keeps an event loop running in the test's thread, so coroutines run through
``tests.support.run_async``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Executable

from heimdall.store.engine import create_engine
from tests.support.run_async import run_async


def run_sql_at(app_dir: Path, statement: Executable) -> list[tuple[Any, ...]]:
    """Run one statement on the SQLite database in a gateway's app dir; rows for a SELECT."""

    async def run() -> list[tuple[Any, ...]]:
        engine = create_engine(f"sqlite+aiosqlite:///{app_dir / 'heimdall.db'}")
        try:
            async with engine.begin() as conn:
                result = await conn.execute(statement)
                return [tuple(row) for row in result.all()] if result.returns_rows else []
        finally:
            await engine.dispose()

    return run_async(run())
