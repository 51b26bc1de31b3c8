"""Shared fixtures: databases (SQLite and PostgreSQL), fake providers, and running gateways.

PostgreSQL and Redis tests run against the servers on 127.0.0.1. When one is unreachable the tests
that need it are skipped with the reason, unless HEIMDALL_REQUIRE_SERVICES=1 (set by .ci/run),
which turns the skip into a failure so CI never passes without them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import RunningGateway, start_gateway
from tests.support.run_async import run_async

POSTGRES_DSN = os.environ.get("HEIMDALL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("HEIMDALL_TEST_REDIS", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("HEIMDALL_REQUIRE_SERVICES") == "1"

#: Gateways started by the current test; stopped before its database is dropped, whatever the fixture order.
_RUNNING: list[RunningGateway] = []


def _stop_running_gateways() -> None:
    while _RUNNING:
        _RUNNING.pop().stop()


def _unavailable(service: str, reason: str) -> None:
    message = f"{service} unavailable ({reason})"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and HEIMDALL_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    try:
        run_async(_pg_admin("SELECT 1"))
    except Exception as exc:  # connection refused, auth, missing driver
        _unavailable("PostgreSQL", f"{POSTGRES_DSN}: {type(exc).__name__}: {exc}")
    return True


@pytest.fixture
def postgres_url(postgres_available: bool) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"heimdall_test_{uuid.uuid4().hex[:12]}"
    run_async(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        _stop_running_gateways()
        run_async(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test once on SQLite (in the app dir) and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'heimdall.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[object]:
    """Start gateways for one test; stopped at teardown (or earlier, before the test's database is dropped)."""
    count = 0

    def factory(config: dict[str, object] | None = None, **settings: object) -> RunningGateway:
        nonlocal count
        gateway = start_gateway(tmp_path / f"app{count}", config=config, **settings)
        count += 1
        _RUNNING.append(gateway)
        return gateway

    yield factory
    _stop_running_gateways()


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        _unavailable("Redis", f"{REDIS_URL}: {type(exc).__name__}: {exc}")
    return REDIS_URL
