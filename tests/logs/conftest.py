"""A fake provider, gateways in front of it on SQLite or PostgreSQL, and ways to read the request log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from heimdall.store.engine import create_engine
from heimdall.store.ui_models import RequestLogRow
from tests.support.fake_providers import FakeProvider, create_fake_provider_app
from tests.support.gateway import RunningGateway
from tests.support.servers import RunningServer, serve_in_thread

VK_APP = "sk-bf-logs-app-key-000000000000001"
#: A virtual key that may assert end-user ids (``X-Bf-User-Id``).
VK_USERS = "sk-bf-logs-users-key-00000000000002"
OPENAI_KEY = "sk-logs-openai-secret-value-0001"
ANTHROPIC_KEY = "sk-ant-logs-secret-value-00002"

StartGateway = Callable[..., RunningGateway]


def gateway_config(upstream: str) -> dict[str, Any]:
    every_provider = [{"provider": name, "allowed_models": ["*"], "key_ids": ["*"]} for name in ("openai", "anthropic")]
    return {
        "providers": {
            "openai": {
                "keys": [
                    {"id": "openai-main", "value": OPENAI_KEY, "models": ["*"], "aliases": {"my-alias": "gpt-4o-mini"}}
                ],
                "network_config": {"base_url": f"{upstream}/v1", "max_retries": 1, "retry_backoff_initial": 10},
            },
            "anthropic": {
                "keys": [{"id": "anthropic-main", "value": ANTHROPIC_KEY, "models": ["*"]}],
                "network_config": {"base_url": upstream, "max_retries": 0},
            },
        },
        "governance": {
            "virtual_keys": [
                {"id": "vk-app", "name": "app", "value": VK_APP, "provider_configs": every_provider},
                {
                    "id": "vk-users",
                    "name": "users",
                    "value": VK_USERS,
                    "provider_configs": every_provider,
                    "can_assert_user_ids": True,
                },
            ]
        },
    }


def chat(model: str, text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture(scope="module")
def fake() -> FakeProvider:
    return create_fake_provider_app()


@pytest.fixture(scope="module")
def upstream(fake: FakeProvider) -> Iterator[RunningServer]:
    with serve_in_thread(fake.app) as running:
        yield running


@pytest.fixture(autouse=True)
def _reset_fake(fake: FakeProvider) -> Iterator[None]:
    fake.reset()
    yield
    fake.reset()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'heimdall.db'}"


def _starter(gateway_factory: Any, upstream: RunningServer, url: str) -> StartGateway:
    def start(config: dict[str, Any] | None = None, **settings: Any) -> RunningGateway:
        settings.setdefault("db_url", url)
        running: RunningGateway = gateway_factory(config or gateway_config(upstream.url), **settings)
        return running

    return start


@pytest.fixture
def start(gateway_factory: Any, upstream: RunningServer, db_url: str) -> StartGateway:
    """Start a gateway in front of the fake provider, once on SQLite and once on PostgreSQL."""
    return _starter(gateway_factory, upstream, db_url)


@pytest.fixture
def start_sqlite(gateway_factory: Any, upstream: RunningServer, sqlite_url: str) -> StartGateway:
    """Start a gateway in front of the fake provider on SQLite only."""
    return _starter(gateway_factory, upstream, sqlite_url)


def wait_for_logs(gateway: RunningGateway, count: int, timeout: float = 5.0, **params: Any) -> list[dict[str, Any]]:
    """``GET /api/logs`` until it lists at least ``count`` rows; returns them (newest first)."""
    deadline = time.monotonic() + timeout
    with gateway.admin() as admin:
        while True:
            response = admin.get("/api/logs", params={"limit": 500, **params})
            assert response.status_code == 200, response.text
            logs: list[dict[str, Any]] = response.json()["logs"]
            if len(logs) >= count:
                return logs
            assert time.monotonic() < deadline, f"expected {count} log rows, found {logs}"
            time.sleep(0.05)


def detail_of(gateway: RunningGateway, log_id: str) -> dict[str, Any]:
    with gateway.admin() as admin:
        response = admin.get(f"/api/logs/{log_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def stored_rows(db_url: str) -> list[dict[str, Any]]:
    """Every ``request_logs`` row with every column, read straight from the database."""

    async def read() -> list[dict[str, Any]]:
        engine = create_engine(db_url)
        try:
            async with engine.connect() as connection:
                result = await connection.execute(select(RequestLogRow.__table__))
                return [dict(row._mapping) for row in result]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def post(
    gateway: RunningGateway, path: str, body: dict[str, Any], vk: str | None = VK_APP, **headers: str
) -> httpx.Response:
    with gateway.client(vk, **headers) as http:
        return http.post(path, json=body)
