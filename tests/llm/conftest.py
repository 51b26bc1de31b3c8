"""One fake upstream (OpenAI, Anthropic and Azure wire formats) and one gateway in front of it, per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_providers import FakeProvider, create_fake_provider_app
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.servers import RunningServer, serve_in_thread

VK_ALL = "sk-bf-all-access-key-000000000001"
VK_LIMITED = "sk-bf-limited-key-00000000000002"
VK_INACTIVE = "sk-bf-inactive-key-0000000000003"
VK_NOTHING = "sk-bf-no-providers-000000000004"


def gateway_config(upstream: str) -> dict[str, Any]:
    return {
        "providers": {
            "openai": {
                "keys": [
                    {
                        "id": "openai-main",
                        "value": "sk-openai-main",
                        "models": ["*"],
                        "aliases": {"my-custom-alias": "gpt-4o-mini", "Fast-Model": "gpt-4o-mini-2024-07-18"},
                    }
                ],
                "network_config": {"base_url": f"{upstream}/v1", "max_retries": 2, "retry_backoff_initial": 10},
            },
            "tiered": {
                "custom_provider_config": {"base_provider_type": "openai"},
                "keys": [
                    {"id": "tier-free", "value": "sk-free", "models": ["best"], "aliases": {"best": "small-model"}},
                    {"id": "tier-paid", "value": "sk-paid", "models": ["best"], "aliases": {"best": "large-model"}},
                ],
                "network_config": {"base_url": upstream, "max_retries": 1, "retry_backoff_initial": 10},
            },
            "slow": {
                "custom_provider_config": {"base_provider_type": "openai"},
                "keys": [{"value": "sk-slow", "models": ["*"]}],
                "network_config": {
                    "base_url": upstream,
                    "default_request_timeout_in_seconds": 0.5,
                    "max_retries": 0,
                },
            },
            "anthropic": {
                "keys": [
                    {"value": "sk-ant-key", "models": ["*"], "aliases": {"claude": "claude-test-1"}},
                ],
                "network_config": {"base_url": upstream, "max_retries": 0},
            },
            "azure": {
                "keys": [
                    {
                        "value": "azure-secret",
                        "models": ["gpt-4o", "text-embedding-3-small"],
                        "aliases": {"gpt-4o": "chat-prod", "text-embedding-3-small": "embed"},
                        "azure_key_config": {"endpoint": upstream, "api_version": "2024-10-21"},
                    }
                ],
                "network_config": {"max_retries": 0},
            },
        },
        "governance": {
            "virtual_keys": [
                {
                    "id": "vk-all",
                    "name": "all",
                    "value": VK_ALL,
                    "provider_configs": [
                        {"provider": name, "allowed_models": ["*"], "key_ids": ["*"]}
                        for name in ("openai", "tiered", "slow", "anthropic", "azure")
                    ],
                },
                {
                    "id": "vk-limited",
                    "name": "limited",
                    "value": VK_LIMITED,
                    "provider_configs": [
                        {
                            "provider": "openai",
                            "allowed_models": ["gpt-4o-mini", "my-custom-alias"],
                            "key_ids": ["*"],
                        },
                        {"provider": "tiered", "allowed_models": ["best"], "key_ids": ["tier-free"]},
                    ],
                },
                {"id": "vk-off", "name": "inactive", "value": VK_INACTIVE, "is_active": False},
                {"id": "vk-none", "name": "nothing", "value": VK_NOTHING},
            ]
        },
    }


@pytest.fixture(scope="module")
def fake() -> FakeProvider:
    return create_fake_provider_app(azure_deployments={"chat-prod": "gpt-4o-2024-08-06", "embed": "text-embedding-3"})


@pytest.fixture(scope="module")
def upstream(fake: FakeProvider) -> Iterator[RunningServer]:
    with serve_in_thread(fake.app) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(upstream: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    app_dir: Path = tmp_path_factory.mktemp("gateway")
    running = start_gateway(app_dir, config=gateway_config(upstream.url), max_request_body_bytes=64 * 1024)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _reset_fake(fake: FakeProvider) -> Iterator[None]:
    fake.reset()
    yield
    fake.reset()


@pytest.fixture
def http(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with gateway.client() as client:
        yield client


def chat(model: str, text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def gateway_admin(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with gateway.admin() as client:
        yield client
