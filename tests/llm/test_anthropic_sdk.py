"""The official anthropic SDK as a client of the gateway's /anthropic/v1/messages."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

from tests.llm.conftest import VK_ALL, VK_LIMITED
from tests.support.fake_providers import FakeProvider, fail, tool_call
from tests.support.gateway import RunningGateway

TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture
def client(gateway: RunningGateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=f"{gateway.url}/anthropic", api_key=VK_ALL, max_retries=0, timeout=10) as sdk:
        yield sdk


@pytest.mark.parametrize("model", ["anthropic/claude", "openai/gpt-4o-mini"])
def test_messages_create_on_any_provider(client: anthropic.Anthropic, fake: FakeProvider, model: str) -> None:
    message = client.messages.create(
        model=model, max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "hello there"}]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello there"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    assert message.model_extra["extra_fields"]["original_model_requested"] == model  # type: ignore[index]


@pytest.mark.parametrize("model", ["anthropic/claude", "openai/gpt-4o-mini"])
def test_streaming_with_tool_use(client: anthropic.Anthropic, fake: FakeProvider, model: str) -> None:
    fake.script("*", tool_call("get_weather", {"city": "Oslo"}, text="Checking."))
    with client.messages.stream(
        model=model, max_tokens=100, tools=[TOOL], messages=[{"role": "user", "content": "weather?"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Checking."
    tool_use = [block for block in final.content if block.type == "tool_use"]
    assert tool_use[0].name == "get_weather" and tool_use[0].input == {"city": "Oslo"}
    assert final.stop_reason == "tool_use"


def test_errors_are_anthropic_shaped(gateway: RunningGateway, fake: FakeProvider) -> None:
    with anthropic.Anthropic(base_url=f"{gateway.url}/anthropic", api_key=VK_LIMITED, max_retries=0) as sdk:
        with pytest.raises(anthropic.PermissionDeniedError) as info:
            sdk.messages.create(model="anthropic/claude", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert info.value.body["type"] == "error"  # type: ignore[index]
    assert info.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    fake.script("anthropic", fail(529, "Overloaded", type="overloaded_error"))
    with anthropic.Anthropic(base_url=f"{gateway.url}/anthropic", api_key=VK_ALL, max_retries=0) as sdk:
        with pytest.raises(anthropic.APIStatusError) as failure:
            sdk.messages.create(model="anthropic/claude", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert failure.value.status_code == 529
