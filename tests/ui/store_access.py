"""The running gateway's database, read and changed from a browser test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Executable

from tests.support.run_async import run_sql


def run_sql_at(app_dir: Path, statement: Executable) -> list[tuple[Any, ...]]:
    """Run one statement on the SQLite database in a gateway's app dir; rows for a SELECT."""
    return run_sql(f"sqlite+aiosqlite:///{app_dir / 'heimdall.db'}", statement)
