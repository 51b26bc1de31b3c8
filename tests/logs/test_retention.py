"""Retention and the writer: pruning by age and by count, a full queue, a store that refuses the batch."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from heimdall.crypto import SecretBox, generate_key, parse_key
from heimdall.governance.request_log import RequestLog
from heimdall.mcp.call_log import ToolCallEntry
from heimdall.store import log_repos
from heimdall.store.engine import create_engine, create_sessionmaker
from heimdall.store.log_repos import LogFilters
from heimdall.store.migrate import upgrade_to_head
from heimdall.store.repos import Store
from tests.logs.conftest import StartGateway, chat, post, wait_for_logs

HOUR = 3600.0


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    engine = create_engine(db_url)
    await upgrade_to_head(engine)
    yield Store(engine, create_sessionmaker(engine), SecretBox(parse_key(generate_key())))
    await engine.dispose()


def entry(tool: str, age_hours: float = 0.0) -> ToolCallEntry:
    """A finished request that arrived ``age_hours`` ago."""
    started = time.perf_counter() - age_hours * HOUR
    return ToolCallEntry("/mcp", started, finished=started + 0.001, tool=tool)


async def tools_stored(store: Store) -> list[str]:
    async with store.read() as session:
        rows = await log_repos.list_logs(session, LogFilters(), limit=1000)
    return [row.model_requested or "" for row in rows]


async def test_prune_by_age(store: Store) -> None:
    log = RequestLog(store, CollectorRegistry(), max_age=timedelta(hours=24))
    for name, age in [("old-1", 200), ("old-2", 25), ("new-1", 23), ("new-2", 0)]:
        log.record(entry(name, age))
    assert await log.flush() == 4
    assert await log.prune() == 2
    assert await tools_stored(store) == ["new-2", "new-1"]


async def test_prune_by_count_keeps_the_newest(store: Store) -> None:
    log = RequestLog(store, CollectorRegistry(), max_rows=3)
    for number in range(7):
        log.record(entry(f"call-{number}", age_hours=(7 - number) / HOUR))
    await log.flush()
    assert await log.prune() == 4
    assert await tools_stored(store) == ["call-6", "call-5", "call-4"]
    assert await log.prune() == 0


async def test_a_backlog_is_written_in_several_transactions(store: Store) -> None:
    log = RequestLog(store, CollectorRegistry(), queue_limit=5000)
    for number in range(1234):
        log.record(entry(f"call-{number:04d}", age_hours=(1234 - number) / HOUR / 1000))
    assert await log.flush() == 1234
    assert not log.queue
    async with store.read() as session:
        rows = await log_repos.list_logs(session, LogFilters(), limit=2000)
    assert [row.model_requested for row in rows] == [f"call-{number:04d}" for number in reversed(range(1234))]
    newest = rows[0]
    assert newest.stream is False and newest.status_code == 200 and newest.detail is None
    assert abs(newest.created_at.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1)


async def test_a_full_queue_drops_the_oldest_and_counts_them(store: Store) -> None:
    registry = CollectorRegistry()
    log = RequestLog(store, registry, queue_limit=3)
    for number in range(5):
        log.record(entry(f"call-{number}"))
    assert await log.flush() == 3
    assert sorted(await tools_stored(store)) == ["call-2", "call-3", "call-4"]
    assert registry.get_sample_value("heimdall_request_log_dropped_total", {"reason": "queue_full"}) == 2
    assert registry.get_sample_value("heimdall_request_log_written_total") == 3


async def test_a_refused_batch_is_counted_not_raised(db_url: str) -> None:
    engine = create_engine(db_url)  # never migrated: there is no request_logs table
    store = Store(engine, create_sessionmaker(engine), SecretBox(parse_key(generate_key())))
    registry = CollectorRegistry()
    log = RequestLog(store, registry)
    try:
        log.record(entry("lost"))
        assert await log.flush() == 0
        assert registry.get_sample_value("heimdall_request_log_dropped_total", {"reason": "write_failed"}) == 1
        assert not log.queue
    finally:
        await engine.dispose()


async def test_disabled_keeps_nothing(store: Store) -> None:
    log = RequestLog(store, CollectorRegistry(), enabled=False, capture_bodies=True)
    log.record(entry("ignored"))
    assert not log.queue and not log.capture_bodies
    assert await log.flush() == 0


def test_the_gateway_keeps_at_most_max_rows(start: StartGateway) -> None:
    gateway = start(request_log_max_rows=3)
    for number in range(6):
        assert post(gateway, "/v1/chat/completions", chat("my-alias", f"request {number}")).status_code == 200
    wait_for_logs(gateway, 3)
    deadline = time.monotonic() + 5
    with gateway.admin() as admin:
        while len(rows := admin.get("/api/logs").json()["logs"]) > 3:
            assert time.monotonic() < deadline, f"never pruned to 3 rows: {len(rows)}"
            time.sleep(0.1)
    assert len(rows) == 3
