"""The fake providers speak the real wire formats: the official OpenAI and Anthropic SDKs are used as clients."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.support.fake_providers import (
    FakeProvider,
    ToolCall,
    create_fake_provider_app,
    drop_stream,
    fail,
    reply,
    slow,
    stream_error,
    tool_call,
)
from tests.support.servers import RunningServer, free_port, serve_in_thread

AZURE_VERSION = "2024-10-21"
CLAUDE = "claude-test-1"  # a name the SDK does not flag as deprecated
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
ANTHROPIC_TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture(scope="module")
def fake() -> FakeProvider:
    return create_fake_provider_app(azure_deployments={"chat-prod": "gpt-4o-2024-08-06", "embed": "text-embedding-3"})


@pytest.fixture(scope="module")
def server(fake: FakeProvider) -> Iterator[RunningServer]:
    with serve_in_thread(fake.app) as running:
        yield running


@pytest.fixture(autouse=True)
def _reset(fake: FakeProvider) -> Iterator[None]:
    fake.reset()
    yield
    fake.reset()


@pytest.fixture
def oai(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-test", max_retries=0, timeout=5) as client:
        yield client


@pytest.fixture
def azure(server: RunningServer) -> Iterator[openai.AzureOpenAI]:
    client = openai.AzureOpenAI(
        azure_endpoint=server.url, api_key="azure-key", api_version=AZURE_VERSION, max_retries=0, timeout=5
    )
    with client:
        yield client


@pytest.fixture
def claude(server: RunningServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.url, api_key="sk-ant-test", max_retries=0, timeout=5) as client:
        yield client


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


# -- server helper -------------------------------------------------------------------------------------------------


def test_serve_in_thread_port_zero_and_context_manager(fake: FakeProvider) -> None:
    with serve_in_thread(fake.app) as running:
        assert running.port > 0
        assert running.url == f"http://127.0.0.1:{running.port}"
        assert httpx.get(f"{running.url}/v1/models", headers={"authorization": "Bearer sk-x"}).status_code == 200
    assert not running.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{running.url}/v1/models")


def test_serve_in_thread_explicit_port(fake: FakeProvider) -> None:
    port = free_port()
    running = serve_in_thread(fake.app, port=port)
    try:
        assert running.port == port
    finally:
        running.stop()
    running.stop()  # idempotent


# -- OpenAI --------------------------------------------------------------------------------------------------------


def test_openai_chat_echo(oai: openai.OpenAI, fake: FakeProvider) -> None:
    result = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}],
    )
    assert result.object == "chat.completion"
    assert result.model == "gpt-4o-mini"
    assert result.choices[0].message.content == "echo: hi there"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (4, 3, 7)
    rec = fake.last("openai.chat")
    assert rec.path == "/v1/chat/completions"
    assert rec.headers["authorization"] == "Bearer sk-test"
    assert rec.body["messages"][-1]["content"] == "hi there"
    assert rec.model == "gpt-4o-mini"


def test_openai_chat_stream_with_usage(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": [{"type": "text", "text": "one two three"}]}],
        stream=True,
        stream_options={"include_usage": True},
    )
    with stream:
        chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-4o" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_openai_chat_stream_without_usage(oai: openai.OpenAI, http: httpx.Client) -> None:
    resp = http.post(
        "/v1/chat/completions",
        headers={"authorization": "Bearer sk-test"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    assert resp.headers["content-type"].startswith("text/event-stream")
    frames = [line.removeprefix("data: ") for line in resp.text.split("\n\n") if line]
    assert frames[-1] == "[DONE]"
    assert all("usage" not in json.loads(f) for f in frames[:-1])


def test_openai_tool_call(oai: openai.OpenAI, fake: FakeProvider) -> None:
    fake.script("openai.chat", tool_call("get_weather", {"city": "Oslo"}, id="call_1"))
    result = oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL]
    )
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id == "call_1" and call.type == "function"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}


def test_openai_tool_call_stream(oai: openai.OpenAI, fake: FakeProvider) -> None:
    second = ToolCall("get_time", {"tz": "UTC"})
    fake.script("openai", tool_call("get_weather", {"city": "Oslo", "unit": "celsius"}, more=[second]))
    stream = oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL], stream=True
    )
    args: dict[int, str] = {}
    names: dict[int, str] = {}
    pieces = 0
    with stream:
        for chunk in stream:
            for tc in chunk.choices[0].delta.tool_calls or []:
                if tc.function and tc.function.name:
                    names[tc.index] = tc.function.name
                if tc.function and tc.function.arguments:
                    args[tc.index] = args.get(tc.index, "") + tc.function.arguments
                    pieces += 1
            finish = chunk.choices[0].finish_reason
    assert finish == "tool_calls"
    assert names == {0: "get_weather", 1: "get_time"}
    assert json.loads(args[0]) == {"city": "Oslo", "unit": "celsius"} and json.loads(args[1]) == {"tz": "UTC"}
    assert pieces >= 4  # arguments arrive in several pieces


def test_openai_embeddings(oai: openai.OpenAI, fake: FakeProvider) -> None:
    floats = oai.embeddings.create(model="text-embedding-3-small", input=["a b", "c"], encoding_format="float")
    b64 = oai.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])  # SDK asks for base64
    assert fake.last("openai.embeddings").body["encoding_format"] == "base64"
    assert floats.object == "list" and floats.model == "text-embedding-3-small"
    assert [d.index for d in floats.data] == [0, 1]
    assert len(floats.data[0].embedding) == 16
    assert floats.data[0].embedding == b64.data[0].embedding
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.usage.prompt_tokens == 3 and floats.usage.total_tokens == 3
    small = oai.embeddings.create(model="m", input="x", dimensions=4)
    assert len(small.data[0].embedding) == 4


def test_openai_models(oai: openai.OpenAI) -> None:
    assert "gpt-4o" in [m.id for m in oai.models.list()]
    assert oai.models.retrieve("gpt-4o").owned_by == "openai"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("nope")


def test_openai_bad_key(server: RunningServer, fake: FakeProvider) -> None:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="bad-key", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as info:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key" and info.value.type == "invalid_request_error"
    assert fake.count("openai.chat") == 1  # rejected requests are recorded too


def test_openai_accepted_keys_configurable(server: RunningServer, fake: FakeProvider) -> None:
    fake.openai_keys = {"sk-only"}
    try:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-other", max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError):
                client.models.list()
    finally:
        fake.openai_keys = None


def test_unknown_path(http: httpx.Client) -> None:
    resp = http.post("/v1/nope", json={})
    assert resp.status_code == 404
    assert resp.json()["error"]["message"] == "Invalid URL (POST /v1/nope)"


# -- Azure OpenAI --------------------------------------------------------------------------------------------------


def test_azure_chat(azure: openai.AzureOpenAI, fake: FakeProvider) -> None:
    result = azure.chat.completions.create(model="chat-prod", messages=[{"role": "user", "content": "hello"}])
    assert result.model == "gpt-4o-2024-08-06"
    assert result.choices[0].message.content == "echo: hello"
    rec = fake.last("azure.chat")
    assert rec.path == "/openai/deployments/chat-prod/chat/completions"
    assert rec.query == {"api-version": AZURE_VERSION}
    assert rec.headers["api-key"] == "azure-key"
    assert rec.model == "chat-prod"


def test_azure_chat_stream(azure: openai.AzureOpenAI) -> None:
    stream = azure.chat.completions.create(
        model="chat-prod", messages=[{"role": "user", "content": "a b"}], stream=True
    )
    with stream:
        chunks = list(stream)
    assert chunks[0].choices == []  # Azure's prompt_filter_results frame
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: a b"
    assert {c.model for c in chunks[1:]} == {"gpt-4o-2024-08-06"}


def test_azure_embeddings(azure: openai.AzureOpenAI) -> None:
    result = azure.embeddings.create(model="embed", input="hello world")
    assert result.model == "text-embedding-3" and len(result.data[0].embedding) == 16


def test_azure_unknown_deployment(azure: openai.AzureOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        azure.chat.completions.create(model="missing", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "DeploymentNotFound"


def test_azure_requires_api_version_and_key(http: httpx.Client) -> None:
    path = "/openai/deployments/chat-prod/chat/completions"
    payload = {"messages": [{"role": "user", "content": "x"}]}
    resp = http.post(path, json=payload, headers={"api-key": "k"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "MissingApiVersionParameter"
    resp = http.post(path, params={"api-version": AZURE_VERSION}, json=payload)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "401"


# -- Anthropic -----------------------------------------------------------------------------------------------------


def test_anthropic_message(claude: anthropic.Anthropic, fake: FakeProvider) -> None:
    message = claude.messages.create(
        model=CLAUDE, max_tokens=100, system="terse", messages=[{"role": "user", "content": "hi you"}]
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == CLAUDE
    assert message.content[0].type == "text" and message.content[0].text == "echo: hi you"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 3)
    rec = fake.last("/v1/messages")
    # anthropic 2.x sends the API key as a bearer token; x-api-key is accepted as well (see the raw tests)
    assert rec.headers["authorization"] == "Bearer sk-ant-test" and "anthropic-version" in rec.headers


def test_anthropic_strict_x_api_key(server: RunningServer, fake: FakeProvider) -> None:
    fake.anthropic_require_x_api_key = True
    try:
        with anthropic.Anthropic(base_url=server.url, api_key="sk-ant-test", max_retries=0) as client:
            with pytest.raises(anthropic.AuthenticationError):
                client.messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "x"}])
        extra = {"x-api-key": "sk-ant-test"}
        with anthropic.Anthropic(base_url=server.url, auth_token="unused", default_headers=extra) as client:
            assert client.messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    finally:
        fake.anthropic_require_x_api_key = False


def test_anthropic_max_tokens_truncates(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=CLAUDE, max_tokens=2, messages=[{"role": "user", "content": "one two three"}]
    )
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "text" and message.content[0].text == "echo: one"


def test_anthropic_raw_stream_events(claude: anthropic.Anthropic) -> None:
    stream = claude.messages.create(
        model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "a b c"}], stream=True
    )
    with stream:
        events = list(stream)
    kinds = [e.type for e in events]  # the SDK swallows "ping"
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert text == "echo: a b c"


def test_anthropic_stream_helper(claude: anthropic.Anthropic, http: httpx.Client) -> None:
    with claude.messages.stream(
        model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "stream me"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: stream me"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 3
    raw = http.post(
        "/v1/messages",
        headers={"x-api-key": "sk-ant-x", "anthropic-version": "2023-06-01"},
        json={"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    names = [block.split("\n")[0].removeprefix("event: ") for block in raw.text.split("\n\n") if block]
    assert names[:3] == ["message_start", "content_block_start", "ping"]


def test_anthropic_tool_use(claude: anthropic.Anthropic, fake: FakeProvider) -> None:
    fake.script("anthropic.messages", tool_call("get_weather", {"city": "Oslo"}, text="Let me check."))
    message = claude.messages.create(
        model=CLAUDE, max_tokens=100, tools=[ANTHROPIC_TOOL], messages=[{"role": "user", "content": "?"}]
    )
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use"]
    block = message.content[1]
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Oslo"}
    assert block.id.startswith("toolu_")


def test_anthropic_tool_use_stream(claude: anthropic.Anthropic, fake: FakeProvider) -> None:
    fake.script("anthropic", tool_call("get_weather", {"city": "Oslo", "unit": "celsius"}))
    with claude.messages.stream(
        model=CLAUDE, max_tokens=100, tools=[ANTHROPIC_TOOL], messages=[{"role": "user", "content": "?"}]
    ) as stream:
        json_deltas = [e for e in stream if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
        final = stream.get_final_message()
    assert len(json_deltas) >= 2
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Oslo", "unit": "celsius"}


def test_anthropic_header_and_body_validation(http: httpx.Client) -> None:
    payload = {"model": CLAUDE, "messages": [{"role": "user", "content": "x"}]}
    resp = http.post("/v1/messages", json=payload, headers={"x-api-key": "sk-ant-x", "anthropic-version": "2023-06-01"})
    assert resp.status_code == 400
    assert resp.json()["type"] == "error"
    assert resp.json()["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    resp = http.post("/v1/messages", json={**payload, "max_tokens": 5}, headers={"x-api-key": "sk-ant-x"})
    assert resp.status_code == 400 and "anthropic-version" in resp.json()["error"]["message"]


def test_anthropic_bad_key(server: RunningServer) -> None:
    with anthropic.Anthropic(base_url=server.url, api_key="nope", max_retries=0) as client:
        with pytest.raises(anthropic.AuthenticationError) as info:
            client.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": info.value.request_id,
    }


# -- scripted behaviours ---------------------------------------------------------------------------------------------


def test_scripted_429_then_success(oai: openai.OpenAI, fake: FakeProvider) -> None:
    fake.script("openai.chat", [fail(429, headers={"retry-after": "1"}), reply("finally")])
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["retry-after"] == "1"
    result = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert result.choices[0].message.content == "finally"
    assert fake.pending() == 0 and fake.count("openai.chat") == 2


def test_scripted_500_each_provider(
    oai: openai.OpenAI, azure: openai.AzureOpenAI, claude: anthropic.Anthropic, fake: FakeProvider
) -> None:
    fake.script("*", [fail(500)] * 3)
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.InternalServerError) as azure_info:
        azure.chat.completions.create(model="chat-prod", messages=[{"role": "user", "content": "x"}])
    assert azure_info.value.code == "InternalServerError"
    with pytest.raises(anthropic.InternalServerError) as info:
        claude.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_scripted_400_and_anthropic_overloaded(
    oai: openai.OpenAI, claude: anthropic.Anthropic, fake: FakeProvider
) -> None:
    fake.script("openai", fail(400, "bad things", code="context_length_exceeded"))
    fake.script("anthropic", fail(529))
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "context_length_exceeded" and "bad things" in info.value.message
    with pytest.raises(anthropic.OverloadedError):
        claude.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])


def test_scripted_by_model_target(oai: openai.OpenAI, fake: FakeProvider) -> None:
    fake.script("model:gpt-4o", reply("only for gpt-4o"))
    other = oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    mine = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert other.choices[0].message.content == "echo: x"
    assert mine.choices[0].message.content == "only for gpt-4o"


def test_sticky_behaviour(oai: openai.OpenAI, fake: FakeProvider) -> None:
    fake.always("openai.chat", fail(503))
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    fake.always("openai.chat", None)
    assert oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}]).choices


def test_model_name_directives(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(model="gpt-4o;status=429", messages=[{"role": "user", "content": "x"}])
    message = claude.messages.create(
        model="claude;text=scripted", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    assert message.content[0].type == "text" and message.content[0].text == "scripted"
    assert message.model == "claude;text=scripted"


def test_delay_triggers_client_timeout(oai: openai.OpenAI, fake: FakeProvider) -> None:
    fake.script("openai.chat", slow(1.0))
    with pytest.raises(openai.APITimeoutError):
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], timeout=0.2)
    fake.script("openai.chat", slow(0.1, reply("late")))
    result = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert result.choices[0].message.content == "late"


def test_openai_drop_mid_stream(oai: openai.OpenAI, fake: FakeProvider) -> None:
    fake.script("openai.chat", drop_stream(after=2, then=reply("one two three four")))
    stream = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True)
    received: list[str] = []
    with stream, pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["", "one "]


def test_anthropic_drop_mid_stream(claude: anthropic.Anthropic, fake: FakeProvider) -> None:
    fake.script("anthropic.messages", drop_stream(after=4))
    events: list[str] = []
    # anthropic 2.x runs on httpx2 and lets its RemoteProtocolError escape from stream iteration
    with pytest.raises(Exception, match="incomplete chunked read") as info:
        with claude.messages.stream(
            model="c", max_tokens=50, messages=[{"role": "user", "content": "x y z"}]
        ) as stream:
            events.extend(event.type for event in stream)
    assert type(info.value).__name__ in ("RemoteProtocolError", "APIConnectionError")
    assert events[:2] == ["message_start", "content_block_start"]


def test_in_band_stream_errors(oai: openai.OpenAI, claude: anthropic.Anthropic, fake: FakeProvider) -> None:
    fake.script("openai.chat", stream_error(after=2, message="boom"))
    fake.script("anthropic.messages", stream_error(after=3))
    stream = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True)
    with stream, pytest.raises(openai.APIError, match="boom"):
        list(stream)
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        with claude.messages.stream(model="c", max_tokens=50, messages=[{"role": "user", "content": "x"}]) as s:
            list(s)


def test_recording_helpers(oai: openai.OpenAI, fake: FakeProvider) -> None:
    oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "1"}])
    oai.embeddings.create(model="text-embedding-3-small", input="2")
    assert [r.kind for r in fake.requests] == ["openai.chat", "openai.embeddings"]
    assert fake.last().kind == "openai.embeddings"
    assert fake.last("/v1/chat").body["messages"][0]["content"] == "1"
    assert fake.requests[0].time <= fake.requests[1].time
    fake.clear()
    assert fake.requests == []
    with pytest.raises(LookupError):
        fake.last("openai")
