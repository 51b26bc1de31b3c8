"""Model aliases (reference.md §7): resolution order, per-key maps, and the extra_fields everywhere."""

from __future__ import annotations

import httpx

from tests.llm.conftest import chat
from tests.support.fake_providers import FakeProvider, fail


def test_exact_match_then_case_insensitive(http: httpx.Client, fake: FakeProvider) -> None:
    exact = http.post("/v1/chat/completions", json=chat("openai/Fast-Model")).json()
    folded = http.post("/v1/chat/completions", json=chat("openai/fast-model")).json()
    assert exact["extra_fields"]["resolved_model_used"] == "gpt-4o-mini-2024-07-18"
    assert folded["extra_fields"]["resolved_model_used"] == "gpt-4o-mini-2024-07-18"
    assert folded["extra_fields"]["original_model_requested"] == "openai/fast-model"
    assert [r.body["model"] for r in fake.find("openai.chat")] == ["gpt-4o-mini-2024-07-18"] * 2


def test_a_model_without_alias_is_sent_unchanged(http: httpx.Client, fake: FakeProvider) -> None:
    body = http.post("/v1/chat/completions", json=chat("openai/gpt-4.1")).json()
    assert body["extra_fields"]["resolved_model_used"] == "gpt-4.1"
    assert fake.last("openai.chat").body["model"] == "gpt-4.1"


def test_bare_alias_routes_to_the_provider_that_defines_it(http: httpx.Client, fake: FakeProvider) -> None:
    body = http.post("/v1/chat/completions", json=chat("claude")).json()
    assert body["extra_fields"]["provider"] == "anthropic"
    assert fake.last("anthropic").body["model"] == "claude-test-1"


def test_errors_carry_both_model_fields(http: httpx.Client, fake: FakeProvider) -> None:
    fake.script("openai.chat", fail(400, "bad things"))
    response = http.post("/v1/chat/completions", json=chat("my-custom-alias"))
    assert response.status_code == 400
    body = response.json()
    assert body["is_bifrost_error"] is False
    assert "bad things" in body["error"]["message"]
    assert body["extra_fields"]["original_model_requested"] == "my-custom-alias"
    assert body["extra_fields"]["resolved_model_used"] == "gpt-4o-mini"


def test_alias_validation_through_the_api_is_a_400(gateway_admin: httpx.Client) -> None:
    for aliases, fragment in [
        ({"": "x"}, "empty"),
        ({"a": ""}, "empty"),
        ({" a": "x"}, "whitespace"),
        ({"a": "x "}, "whitespace"),
        ({"Best": "x", "best": "y"}, "case-insensitive"),
    ]:
        response = gateway_admin.post(
            "/api/providers/openai/keys", json={"value": "sk-new", "models": ["*"], "aliases": aliases}
        )
        assert response.status_code == 400, (aliases, response.text)
        assert fragment in response.json()["error"]["message"]
        assert "$.aliases" in response.json()["error"]["message"]
    keys = gateway_admin.get("/api/providers/openai/keys").json()
    assert [key["id"] for key in keys] == ["openai-main"]
