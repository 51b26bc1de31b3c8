"""Alembic environment: uses the connection handed over by ``heimdall.store.migrate`` when present."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from heimdall.store import mcp_models, models, oidc_models, per_user_models, ui_models  # noqa: F401  (registers the tables)
from heimdall.store.base import Base
from heimdall.store.engine import normalize_url

target_metadata = Base.metadata


def _configure(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return

    async def _run() -> None:
        engine = create_async_engine(normalize_url(context.config.get_main_option("sqlalchemy.url") or ""))
        async with engine.begin() as conn:
            await conn.run_sync(_configure)
        await engine.dispose()

    asyncio.run(_run())


if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
