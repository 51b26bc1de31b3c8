"""Housekeeping (W25) on SQLite and PostgreSQL: what a sweep removes and what it keeps; the gateway runs it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.crypto import SecretBox, generate_key, parse_key
from heimdall.oauth.server.sweeper import sweep
from heimdall.oauth.upstream.records import utcnow
from heimdall.store.engine import create_engine, create_sessionmaker
from heimdall.store.migrate import upgrade_to_head
from heimdall.store.per_user_models import ASClientRow, ASCodeRow, ASGrantRow, ASPendingFlowRow, ASTokenRow
from heimdall.store.repos import Store
from tests.oauth_server.helpers import gateway_config, open_store
from tests.support.gateway import RunningGateway


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    engine = create_engine(db_url)
    await upgrade_to_head(engine)
    yield Store(engine, create_sessionmaker(engine), SecretBox(parse_key(generate_key())))
    await engine.dispose()


def flow(flow_id: str, expires_at: datetime) -> ASPendingFlowRow:
    return ASPendingFlowRow(
        id=flow_id,
        client_id="c",
        redirect_uri="https://a.example/cb",
        code_challenge="x" * 43,
        scope="",
        browser_secret_hash="h",
        csrf_hash="h",
        identity_chosen=False,
        expires_at=expires_at,
    )


def grant(grant_id: str, *, expires_at: datetime | None, revoked: bool = False) -> ASGrantRow:
    return ASGrantRow(
        id=grant_id,
        client_id="c",
        identity_kind="vk",
        identity="vk-1",
        scope="mcp:read",
        resource="r",
        expires_at=expires_at,
        revoked_at=utcnow() if revoked else None,
    )


def token(token_hash: str, grant_id: str, expires_at: datetime | None, kind: str = "access") -> ASTokenRow:
    return ASTokenRow(
        token_hash=token_hash, grant_id=grant_id, kind=kind, scope="", audience="r", used=False, expires_at=expires_at
    )


def code(code_hash: str, grant_id: str, expires_at: datetime) -> ASCodeRow:
    return ASCodeRow(
        code_hash=code_hash,
        grant_id=grant_id,
        client_id="c",
        redirect_uri="https://a.example/cb",
        code_challenge="x" * 43,
        used=False,
        expires_at=expires_at,
    )


async def count(session: AsyncSession, model: type) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_sweep_removes_what_ended_and_keeps_the_rest(store: Store) -> None:
    now = utcnow()
    past, future = now - timedelta(minutes=1), now + timedelta(hours=1)
    async with store.transaction() as session:
        session.add_all([flow("old-flow", past), flow("live-flow", future)])
        session.add_all(
            [
                grant("live", expires_at=future),
                grant("revoked", expires_at=future, revoked=True),
                grant("ended", expires_at=past),
            ]
        )
        await session.flush()
        session.add_all(
            [
                token("t-live", "live", future),
                token("t-expired", "live", past),
                token("t-of-revoked", "revoked", future, kind="refresh"),
                token("t-of-ended", "ended", future),
                code("c-live", "live", future),
                code("c-expired", "live", past),
                code("c-of-ended", "ended", future),
            ]
        )
        session.add_all(
            [
                ASClientRow(client_id="unused-old", created_at=now - timedelta(days=31)),
                ASClientRow(
                    client_id="used-old", created_at=now - timedelta(days=31), last_used_at=now - timedelta(days=2)
                ),
                ASClientRow(client_id="unused-new", created_at=now - timedelta(days=1)),
            ]
        )

    calls: list[datetime] = []

    async def extra_job(session: AsyncSession, when: datetime) -> int:
        calls.append(when)
        return 7

    removed = await sweep(store, now, jobs=[("extra", extra_job)])
    assert removed == {"flows": 1, "codes": 1, "tokens": 1, "grants": 2, "clients": 1, "extra": 7}
    assert calls == [now]
    async with store.read() as session:
        assert {f.id for f in (await session.scalars(select(ASPendingFlowRow))).all()} == {"live-flow"}
        assert {g.id for g in (await session.scalars(select(ASGrantRow))).all()} == {"live"}
        assert {t.token_hash for t in (await session.scalars(select(ASTokenRow))).all()} == {"t-live"}
        assert {c.code_hash for c in (await session.scalars(select(ASCodeRow))).all()} == {"c-live"}
        assert {c.client_id for c in (await session.scalars(select(ASClientRow))).all()} == {"used-old", "unused-new"}
    assert await sweep(store, now) == {"flows": 0, "codes": 0, "tokens": 0, "grants": 0, "clients": 0}


async def test_the_gateway_sweeps_in_the_background(
    tmp_path: object, gateway_factory: Callable[..., RunningGateway]
) -> None:
    running = gateway_factory(gateway_config(per_user_oauth={"sweep_interval": 1}))
    store = open_store(running.app_dir)
    try:
        async with store.transaction() as session:
            session.add(flow("expired-flow", utcnow() - timedelta(seconds=1)))
        deadline = time.monotonic() + 5
        while True:
            async with store.read() as session:
                if await count(session, ASPendingFlowRow) == 0:
                    break
            assert time.monotonic() < deadline, "the expired flow was not swept"
            await asyncio.sleep(0.1)
    finally:
        await store.engine.dispose()
