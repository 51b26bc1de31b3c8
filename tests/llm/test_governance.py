"""Virtual keys on the inference path: every header form, allow-lists, inactive and unknown keys."""

from __future__ import annotations

import httpx
import pytest

from tests.llm.conftest import VK_ALL, VK_INACTIVE, VK_LIMITED, VK_NOTHING, chat
from tests.support.fake_providers import FakeProvider
from tests.support.gateway import RunningGateway

OPENAI_ALL = {"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"]}


@pytest.mark.parametrize(
    "headers",
    [
        {"x-bf-vk": VK_LIMITED},
        {"x-bf-virtual-key": VK_LIMITED},
        {"Authorization": f"Bearer {VK_LIMITED}"},
        {"x-api-key": VK_LIMITED},
        {"X-BF-VK": VK_LIMITED},
    ],
)
def test_every_header_form_identifies_the_key(http: httpx.Client, headers: dict[str, str]) -> None:
    allowed = http.post("/v1/chat/completions", json=chat("openai/gpt-4o-mini"), headers=headers)
    assert allowed.status_code == 200, allowed.text
    refused = http.post("/v1/chat/completions", json=chat("openai/gpt-4o"), headers=headers)
    assert refused.status_code == 403
    assert "not allowed to use model 'gpt-4o'" in refused.json()["error"]["message"]


def test_unknown_key_is_401_in_the_envelope(http: httpx.Client, fake: FakeProvider) -> None:
    response = http.post("/v1/chat/completions", json=chat("openai/gpt-4o-mini"), headers={"x-bf-vk": "sk-bf-nope"})
    assert response.status_code == 401
    body = response.json()
    assert body["is_bifrost_error"] is True
    assert body["status_code"] == 401
    assert body["error"]["message"] == "invalid virtual key"
    assert body["extra_fields"]["original_model_requested"] == "openai/gpt-4o-mini"
    assert fake.count() == 0


def test_inactive_key_is_403(http: httpx.Client, fake: FakeProvider) -> None:
    response = http.post("/v1/chat/completions", json=chat("openai/gpt-4o-mini"), headers={"x-bf-vk": VK_INACTIVE})
    assert response.status_code == 403
    assert "inactive" in response.json()["error"]["message"]
    assert fake.count() == 0


def test_empty_provider_configs_allow_nothing(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=chat("openai/gpt-4o-mini"), headers={"x-bf-vk": VK_NOTHING})
    assert response.status_code == 403
    assert "provider 'openai'" in response.json()["error"]["message"]


def test_provider_not_in_the_keys_allow_list(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=chat("anthropic/claude"), headers={"x-bf-vk": VK_LIMITED})
    assert response.status_code == 403


def test_alias_names_count_for_the_model_allow_list(http: httpx.Client, fake: FakeProvider) -> None:
    response = http.post("/v1/chat/completions", json=chat("my-custom-alias"), headers={"x-bf-vk": VK_LIMITED})
    assert response.status_code == 200
    assert fake.last("openai.chat").body["model"] == "gpt-4o-mini"


def test_key_ids_restrict_key_selection(http: httpx.Client, fake: FakeProvider) -> None:
    for _ in range(8):
        response = http.post("/v1/chat/completions", json=chat("tiered/best"), headers={"x-bf-vk": VK_LIMITED})
        assert response.status_code == 200
        assert response.json()["extra_fields"]["resolved_model_used"] == "small-model"
    assert {r.headers["authorization"] for r in fake.find("openai.chat")} == {"Bearer sk-free"}


def test_weights_spread_requests_over_keys_with_per_key_aliases(http: httpx.Client, fake: FakeProvider) -> None:
    resolved = set()
    for _ in range(30):
        response = http.post("/v1/chat/completions", json=chat("tiered/best"), headers={"x-bf-vk": VK_ALL})
        resolved.add(response.json()["extra_fields"]["resolved_model_used"])
    assert resolved == {"small-model", "large-model"}
    pairs = {(r.headers["authorization"], r.body["model"]) for r in fake.find("openai.chat")}
    assert pairs == {("Bearer sk-free", "small-model"), ("Bearer sk-paid", "large-model")}


def test_provider_keys_sent_by_callers_are_not_virtual_keys(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions", json=chat("openai/gpt-4o-mini"), headers={"Authorization": "Bearer sk-user-openai"}
    )
    assert response.status_code == 200


def test_enforce_auth_on_inference_requires_a_key(gateway: RunningGateway, http: httpx.Client) -> None:
    with gateway.admin() as admin:
        assert admin.put("/api/config", json={"client": {"enforce_auth_on_inference": True}}).status_code == 200
        try:
            missing = http.post("/v1/chat/completions", json=chat("openai/gpt-4o-mini"))
            assert missing.status_code == 401
            assert "virtual key is required" in missing.json()["error"]["message"]
            present = http.post("/v1/chat/completions", json=chat("openai/gpt-4o-mini"), headers={"x-bf-vk": VK_ALL})
            assert present.status_code == 200
        finally:
            admin.put("/api/config", json={"client": {"enforce_auth_on_inference": False}})


def test_key_changes_through_the_api_apply_immediately(gateway: RunningGateway, http: httpx.Client) -> None:
    with gateway.admin() as admin:
        created = admin.post(
            "/api/governance/virtual-keys",
            json={"name": "temp", "provider_configs": [OPENAI_ALL]},
        )
        assert created.status_code == 201, created.text
        value, vk_id = created.json()["value"], created.json()["id"]
        assert value.startswith("sk-bf-")
        ok = http.post("/v1/chat/completions", json=chat("openai/gpt-4o-mini"), headers={"x-bf-vk": value})
        assert ok.status_code == 200
        admin.put(f"/api/governance/virtual-keys/{vk_id}", json={"is_active": False})
        off = http.post("/v1/chat/completions", json=chat("openai/gpt-4o-mini"), headers={"x-bf-vk": value})
        assert off.status_code == 403
        admin.delete(f"/api/governance/virtual-keys/{vk_id}")
        gone = http.post("/v1/chat/completions", json=chat("openai/gpt-4o-mini"), headers={"x-bf-vk": value})
        assert gone.status_code == 401


def test_models_are_filtered_by_the_virtual_key(http: httpx.Client) -> None:
    ids = {m["id"] for m in http.get("/v1/models", headers={"x-bf-vk": VK_LIMITED}).json()["data"]}
    assert ids == {"openai/my-custom-alias", "tiered/best"}
