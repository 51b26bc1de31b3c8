"""Which database errors mean "a concurrent transaction won; run yours again" (PostgreSQL SQLSTATEs)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from heimdall.store.engine import create_engine
from heimdall.store.repos import is_retryable_conflict


@pytest.mark.postgres
@pytest.mark.parametrize(("sqlstate", "retryable"), [("40P01", True), ("40001", True), ("23505", False)])
async def test_deadlocks_and_serialization_failures_are_retryable(
    postgres_url: str, sqlstate: str, retryable: bool
) -> None:
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as raised:
                await conn.execute(text(f"DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '{sqlstate}'; END $$"))
        assert is_retryable_conflict(raised.value) is retryable
    finally:
        await engine.dispose()
