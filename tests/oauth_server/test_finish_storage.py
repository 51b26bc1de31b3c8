"""Finish Setup's single transaction on SQLite and PostgreSQL: one grant per flow, 409 for a second
Finish (also when two arrive at once), 410 for an expired flow."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from heimdall.oauth.upstream.records import utcnow
from heimdall.store.per_user_models import ASCodeRow, ASGrantRow, ASPendingFlowRow
from tests.oauth_server.helpers import VK_ALL, ASClient, gateway_config, open_store
from tests.support.gateway import RunningGateway


@pytest.fixture
def gw(db_url: str, gateway_factory: Callable[..., RunningGateway]) -> RunningGateway:
    running = gateway_factory(gateway_config(), db_url=db_url)
    running.db_url = db_url  # type: ignore[attr-defined]
    return running


@pytest.fixture
def client(gw: RunningGateway) -> Iterator[ASClient]:
    with ASClient(gw.url) as as_client:
        yield as_client


async def counts(gw: RunningGateway) -> tuple[int, int, int]:
    store = open_store(gw.app_dir, gw.db_url)  # type: ignore[attr-defined]
    try:
        async with store.read() as session:
            values = [
                int(await session.scalar(select(func.count()).select_from(model)) or 0)
                for model in (ASPendingFlowRow, ASGrantRow, ASCodeRow)
            ]
    finally:
        await store.engine.dispose()
    return values[0], values[1], values[2]


async def test_concurrent_finishes_make_one_grant(client: ASClient, gw: RunningGateway) -> None:
    started = client.start(client.register())
    client.choose_vk(started.flow_id, VK_ALL)
    csrf = client.csrf(started.flow_id)
    cookies = dict(client.http.cookies)

    def submit(_: int) -> int:
        with httpx.Client(base_url=gw.url, cookies=cookies, trust_env=False, timeout=30) as http:
            response = http.post(
                "/api/oauth/per-user/consent/submit", data={"flow_id": started.flow_id, "csrf_token": csrf}
            )
            return response.status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(submit, range(4)))
    assert statuses == [302, 409, 409, 409]
    assert await counts(gw) == (0, 1, 1)


async def test_expired_flow_finish_is_410_and_changes_nothing(client: ASClient, gw: RunningGateway) -> None:
    started = client.start(client.register())
    client.choose_vk(started.flow_id, VK_ALL)
    csrf = client.csrf(started.flow_id)
    store = open_store(gw.app_dir, gw.db_url)  # type: ignore[attr-defined]
    try:
        async with store.transaction() as session:
            await session.execute(
                update(ASPendingFlowRow)
                .where(ASPendingFlowRow.id == started.flow_id)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
    finally:
        await store.engine.dispose()
    response = client.post("/api/oauth/per-user/consent/submit", {"flow_id": started.flow_id, "csrf_token": csrf})
    assert response.status_code == 410
    assert await counts(gw) == (1, 0, 0)


async def test_refused_finish_keeps_the_flow(client: ASClient, gw: RunningGateway) -> None:
    started = client.start(client.register())
    client.choose_vk(started.flow_id, VK_ALL)
    forged = client.post("/api/oauth/per-user/consent/submit", {"flow_id": started.flow_id, "csrf_token": "x" * 64})
    assert forged.status_code == 403
    with ASClient(gw.url) as stranger:
        other = stranger.post(
            "/api/oauth/per-user/consent/submit",
            {"flow_id": started.flow_id, "csrf_token": client.csrf(started.flow_id)},
        )
        assert other.status_code == 403
    assert await counts(gw) == (1, 0, 0)
    assert client.finish(started.flow_id).status_code == 302
    assert await counts(gw) == (0, 1, 1)
