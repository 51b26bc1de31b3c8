"""Alembic migrations from an empty database, on SQLite and PostgreSQL: they produce exactly the models' schema."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from heimdall.store import models  # noqa: F401  (registers the tables, as the migration environment does)
from heimdall.store.base import Base
from heimdall.store.engine import create_engine
from heimdall.store.migrate import alembic_config, upgrade_to_head


def _inspect(url: str) -> dict[str, Any]:
    """Tables, the alembic revision and the differences between the models and the database."""

    def sync(connection: Connection) -> dict[str, Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": connection.dialect.name == "sqlite"}
        )
        return {
            "tables": set(inspect(connection).get_table_names()),
            "revision": context.get_current_revision(),
            "diff": compare_metadata(context, Base.metadata),
        }

    async def run() -> dict[str, Any]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(sync)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def test_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, "migrations must not branch"
    assert script.get_base() is not None


def test_upgrade_from_empty_matches_the_models(db_url: str) -> None:
    assert _inspect(db_url)["tables"] == set()
    command.upgrade(alembic_config(db_url), "head")
    state = _inspect(db_url)
    assert state["revision"] == _head()
    assert set(Base.metadata.tables) <= state["tables"]
    assert state["tables"] - set(Base.metadata.tables) == {"alembic_version"}
    assert state["diff"] == [], f"models and migrations disagree: {state['diff']}"


def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    config = alembic_config(db_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    state = _inspect(db_url)
    assert state["tables"] <= {"alembic_version"}
    assert state["revision"] is None
    command.upgrade(config, "head")
    state = _inspect(db_url)
    assert state["revision"] == _head()
    assert state["diff"] == []


def test_step_by_step_upgrade_and_downgrade(db_url: str) -> None:
    """Every revision upgrades and downgrades on its own (not only head <-> base in one go)."""
    config = alembic_config(db_url)
    revisions = list(reversed(list(ScriptDirectory.from_config(config).walk_revisions())))
    for revision in revisions:
        command.upgrade(config, revision.revision)
        assert _inspect(db_url)["revision"] == revision.revision
    for revision in reversed(revisions):
        down = revision.down_revision
        assert down is None or isinstance(down, str), "migrations are linear"
        command.downgrade(config, down or "base")
        assert _inspect(db_url)["revision"] == down


async def test_startup_upgrade_is_idempotent(db_url: str) -> None:
    """The gateway upgrades on every start; a second start on an up-to-date database changes nothing."""
    engine = create_engine(db_url)
    try:
        await upgrade_to_head(engine)
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
    state = await asyncio.to_thread(_inspect, db_url)
    assert state["revision"] == _head()
    assert state["diff"] == []


def test_the_comparison_detects_drift(tmp_path: Path) -> None:
    """Guard the guard: a model change without a migration shows up as a difference."""
    from sqlalchemy import Column, Integer, MetaData, Table

    url = f"sqlite+aiosqlite:///{tmp_path / 'drift.db'}"
    command.upgrade(alembic_config(url), "head")
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    Table("not_migrated", drifted, Column("id", Integer, primary_key=True))

    def sync(connection: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), drifted))

    async def run() -> list[Any]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(sync)
        finally:
            await engine.dispose()

    diff = asyncio.run(run())
    assert [entry[0] for entry in diff] == ["add_table"]
