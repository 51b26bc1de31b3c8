"""The official openai SDK against the gateway, with OpenAI, Anthropic and Azure behind it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.llm.conftest import VK_ALL
from tests.support.fake_providers import FakeProvider, tool_call
from tests.support.gateway import RunningGateway

WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


@pytest.fixture
def client(gateway: RunningGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=VK_ALL, max_retries=0, timeout=10) as sdk:
        yield sdk


def test_chat_completion_through_openai(client: openai.OpenAI, fake: FakeProvider) -> None:
    result = client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert result.choices[0].message.content == "echo: hi"
    extra = result.model_extra["extra_fields"]  # type: ignore[index]
    assert extra["original_model_requested"] == "openai/gpt-4o-mini"
    assert extra["resolved_model_used"] == "gpt-4o-mini"
    assert extra["provider"] == "openai"
    sent = fake.last("openai.chat")
    assert sent.headers["authorization"] == "Bearer sk-openai-main"
    assert sent.body["model"] == "gpt-4o-mini"


def test_alias_is_resolved_before_the_upstream_call(client: openai.OpenAI, fake: FakeProvider) -> None:
    result = client.chat.completions.create(model="my-custom-alias", messages=[{"role": "user", "content": "x"}])
    assert fake.last("openai.chat").body["model"] == "gpt-4o-mini"
    extra = result.model_extra["extra_fields"]  # type: ignore[index]
    assert extra == {
        "original_model_requested": "my-custom-alias",
        "provider": "openai",
        "resolved_model_used": "gpt-4o-mini",
    }


def test_streaming_relays_chunks_and_marks_the_final_frame(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me please"
    finals = [c for c in chunks if (c.model_extra or {}).get("extra_fields")]
    assert finals, "the final frame carries extra_fields"
    assert finals[-1].model_extra["extra_fields"]["resolved_model_used"] == "gpt-4o-mini"  # type: ignore[index]
    assert chunks[-1].usage is not None


def test_tool_calls_pass_through(client: openai.OpenAI, fake: FakeProvider) -> None:
    fake.script("openai.chat", tool_call("get_weather", {"city": "Oslo"}, id="call_1"))
    result = client.chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER]
    )
    call = result.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Oslo"}  # type: ignore[union-attr]
    assert result.choices[0].finish_reason == "tool_calls"
    assert fake.last("openai.chat").body["tools"] == [WEATHER]


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_provider_translates_both_ways(client: openai.OpenAI, fake: FakeProvider, stream: bool) -> None:
    fake.script("anthropic", tool_call("get_weather", {"city": "Bergen"}, text="Let me check."))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "weather in Bergen?"}]
    if stream:
        chunks = list(
            client.chat.completions.create(model="anthropic/claude", messages=messages, tools=[WEATHER], stream=True)
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        arguments = "".join(
            tc.function.arguments or ""
            for c in chunks
            if c.choices
            for tc in (c.choices[0].delta.tool_calls or [])
            if tc.function
        )
        names = [
            tc.function.name
            for c in chunks
            if c.choices
            for tc in (c.choices[0].delta.tool_calls or [])
            if tc.function and tc.function.name
        ]
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        result = client.chat.completions.create(model="anthropic/claude", messages=messages, tools=[WEATHER])
        message = result.choices[0].message
        text = message.content or ""
        arguments = message.tool_calls[0].function.arguments  # type: ignore[index, union-attr]
        names = [message.tool_calls[0].function.name]  # type: ignore[index, union-attr]
        finish = [result.choices[0].finish_reason]
    assert text == "Let me check."
    assert json.loads(arguments) == {"city": "Bergen"}
    assert names == ["get_weather"]
    assert finish == ["tool_calls"]
    sent = fake.last("anthropic")
    assert sent.headers["x-api-key"] == "sk-ant-key"
    assert sent.body["model"] == "claude-test-1"
    assert sent.body["system"] == "Be brief."
    assert sent.body["tools"][0]["name"] == "get_weather"


def test_tool_result_round_trip_to_anthropic(client: openai.OpenAI, fake: FakeProvider) -> None:
    client.chat.completions.create(
        model="anthropic/claude",
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        ],
        tools=[WEATHER],
    )
    sent = fake.last("anthropic").body["messages"]
    assert sent[1]["content"][0]["type"] == "tool_use"
    result = sent[2]["content"][0]
    assert (result["type"], result["tool_use_id"]) == ("tool_result", "toolu_1")
    assert result["content"] in ("sunny", [{"type": "text", "text": "sunny"}])


@pytest.mark.parametrize("stream", [False, True])
def test_azure_deployment_comes_from_the_alias(client: openai.OpenAI, fake: FakeProvider, stream: bool) -> None:
    messages = [{"role": "user", "content": "hi azure"}]
    if stream:
        chunks = list(client.chat.completions.create(model="azure/gpt-4o", messages=messages, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = client.chat.completions.create(model="azure/gpt-4o", messages=messages).choices[0].message.content or ""
    assert text == "echo: hi azure"
    sent = fake.last("azure.chat")
    assert sent.path == "/openai/deployments/chat-prod/chat/completions"
    assert sent.query["api-version"] == "2024-10-21"
    assert sent.headers["api-key"] == "azure-secret"
    assert "authorization" not in sent.headers


def test_embeddings_on_openai_and_azure(client: openai.OpenAI, fake: FakeProvider) -> None:
    direct = client.embeddings.create(model="openai/text-embedding-3-small", input=["a", "b"])
    assert len(direct.data) == 2 and len(direct.data[0].embedding) == 16
    azure = client.embeddings.create(model="azure/text-embedding-3-small", input="a")
    assert len(azure.data) == 1
    assert fake.last("azure.embeddings").path == "/openai/deployments/embed/embeddings"


def test_models_lists_configured_models_and_aliases(client: openai.OpenAI) -> None:
    ids = {model.id for model in client.models.list()}
    assert {"openai/my-custom-alias", "openai/Fast-Model", "tiered/best", "azure/gpt-4o", "anthropic/claude"} <= ids
