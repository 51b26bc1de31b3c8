"""Several gateway processes on one store: a change made through one is served by the others."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from heimdall.crypto import generate_key
from tests.support.fake_providers import create_fake_provider_app
from tests.support.gateway import RunningGateway
from tests.support.servers import serve_in_thread

ALL_OPENAI = [{"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"]}]
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def wait_for_status(client: httpx.Client, vk: str, status: int, within: float) -> float:
    started = time.monotonic()
    while True:
        code = client.post("/v1/chat/completions", json=CHAT, headers={"x-bf-vk": vk}).status_code
        if code == status:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise AssertionError(f"still {code} after {within}s, expected {status}")
        time.sleep(0.02)


def two_gateways(
    gateway_factory: Callable[..., RunningGateway], upstream: str, db_url: str, **settings: object
) -> tuple[RunningGateway, RunningGateway]:
    openai = {"keys": [{"value": "sk-x", "models": ["*"]}], "network_config": {"base_url": upstream}}
    config = {"providers": {"openai": openai}}
    # Processes that share a store must share the encryption key (hashes and ciphertexts derive from it).
    key = generate_key()
    first = gateway_factory(config=config, db_url=db_url, encryption_key=key, **settings)
    second = gateway_factory(db_url=db_url, encryption_key=key, **settings)
    return first, second


@pytest.mark.redis
@pytest.mark.postgres
def test_redis_carries_changes_between_processes_at_once(
    postgres_url: str, redis_url: str, gateway_factory: Callable[..., RunningGateway]
) -> None:
    fake = create_fake_provider_app()
    with serve_in_thread(fake.app) as upstream:
        first, second = two_gateways(
            gateway_factory, upstream.url, postgres_url, redis_url=redis_url, config_poll_seconds=60
        )
        with first.admin() as admin, second.client() as client:
            created = admin.post(
                "/api/governance/virtual-keys",
                json={"name": "shared", "provider_configs": ALL_OPENAI},
            ).json()
            assert wait_for_status(client, created["value"], 200, within=2) < 2
            admin.put(f"/api/governance/virtual-keys/{created['id']}", json={"is_active": False})
            assert wait_for_status(client, created["value"], 403, within=2) < 2


def test_without_redis_other_processes_poll_the_store(
    db_url: str, gateway_factory: Callable[..., RunningGateway]
) -> None:
    fake = create_fake_provider_app()
    with serve_in_thread(fake.app) as upstream:
        first, second = two_gateways(gateway_factory, upstream.url, db_url, config_poll_seconds=0.2)
        with first.admin() as admin, second.client() as client:
            created = admin.post(
                "/api/governance/virtual-keys",
                json={"name": "polled", "provider_configs": ALL_OPENAI},
            ).json()
            wait_for_status(client, created["value"], 200, within=5)
            admin.delete(f"/api/governance/virtual-keys/{created['id']}")
            wait_for_status(client, created["value"], 401, within=5)
