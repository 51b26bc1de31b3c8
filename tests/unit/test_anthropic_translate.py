"""Translations between OpenAI chat completions and the Anthropic Messages API, both directions.

Fixtures follow the wire formats of https://docs.anthropic.com/en/api/messages (and its streaming
page) and https://platform.openai.com/docs/api-reference/chat; outputs are also validated with the
official SDKs' response models.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from heimdall.config.allowlists import AllowList
from heimdall.errors import BadRequest, UpstreamError
from heimdall.llm.catalog import KeyRuntime, ProviderRuntime
from heimdall.llm.providers.anthropic import AnthropicAdapter
from heimdall.llm.providers.anthropic_reverse import (
    OpenAIToAnthropicStream,
    anthropic_to_openai_request,
    openai_to_anthropic_response,
)
from heimdall.llm.providers.anthropic_translate import (
    DEFAULT_MAX_TOKENS,
    AnthropicToOpenAIStream,
    anthropic_error_body,
    anthropic_to_openai_response,
    openai_to_anthropic_request,
)
from heimdall.llm.providers.base import StreamBroken, Target

JSON = dict[str, Any]
MODEL = "claude-sonnet-4-5"
STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)

WEATHER_TOOL_OPENAI: JSON = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_TOOL_ANTHROPIC: JSON = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgo="


def tool_call(call_id: str, name: str, arguments: str) -> JSON:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def user(content: Any) -> JSON:
    return {"role": "user", "content": content}


# --- openai_to_anthropic_request ----------------------------------------------------------------


def test_request_minimal_defaults_max_tokens_and_uses_the_target_model() -> None:
    body = {"model": "anthropic/my-alias", "messages": [user("Hello")]}
    assert openai_to_anthropic_request(body, MODEL) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "max_tokens": DEFAULT_MAX_TOKENS,
    }
    assert DEFAULT_MAX_TOKENS == 4096


def test_request_system_and_developer_messages_become_one_system_string() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            user("Hi"),
        ]
    }
    request = openai_to_anthropic_request(body, MODEL)
    assert request["system"] == "You are terse.\n\nAnswer in French."
    assert [m["role"] for m in request["messages"]] == ["user"]


def test_request_without_system_has_no_system_field() -> None:
    assert "system" not in openai_to_anthropic_request({"messages": [user("Hi")]}, MODEL)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 200}, 200),
        ({"max_tokens": 100, "max_completion_tokens": 200}, 200),
        ({}, 4096),
    ],
)
def test_request_max_tokens(fields: JSON, expected: int) -> None:
    assert openai_to_anthropic_request({"messages": [user("x")], **fields}, MODEL)["max_tokens"] == expected


def test_request_sampling_stop_stream_and_user() -> None:
    body = {
        "messages": [user("x")],
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "stream": True,
        "user": "user-42",
    }
    request = openai_to_anthropic_request(body, MODEL)
    assert request["temperature"] == 0.2
    assert request["top_p"] == 0.9
    assert request["stop_sequences"] == ["END"]
    assert request["stream"] is True
    assert request["metadata"] == {"user_id": "user-42"}


def test_request_stop_list_and_stream_false() -> None:
    request = openai_to_anthropic_request({"messages": [user("x")], "stop": ["a", "b"], "stream": False}, MODEL)
    assert request["stop_sequences"] == ["a", "b"]
    assert "stream" not in request


def test_request_unknown_openai_fields_are_dropped() -> None:
    body = {
        "model": "x",
        "messages": [user("x")],
        "n": 1,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.1,
        "logit_bias": {"50256": -100},
        "response_format": {"type": "json_object"},
        "stream_options": {"include_usage": True},
        "seed": 7,
        "logprobs": False,
    }
    assert set(openai_to_anthropic_request(body, MODEL)) == {"model", "messages", "max_tokens"}


def test_request_content_parts_text_and_images() -> None:
    content = [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    request = openai_to_anthropic_request({"messages": [user(content)]}, MODEL)
    assert request["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_request_pdf_file_part_becomes_a_document_block() -> None:
    part = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
    request = openai_to_anthropic_request({"messages": [user([part])]}, MODEL)
    assert request["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
    ]


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}},
        {"type": "image_url", "image_url": {"url": "ftp://example.com/x.png"}},
        {"type": "image_url", "image_url": {}},
        {"type": "input_audio", "input_audio": {"data": "AAA=", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-abc"}},
        {"type": "text"},
        "just a string",
    ],
)
def test_request_unsupported_content_parts_are_bad_requests(part: Any) -> None:
    with pytest.raises(BadRequest) as info:
        openai_to_anthropic_request({"messages": [user([part])]}, MODEL)
    assert info.value.status_code == 400
    assert info.value.param is not None and info.value.param.startswith("messages[0].content[0]")


def test_request_tool_use_conversation() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Use tools."},
            user("Weather in Paris and Rome?"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    tool_call("call_1", "get_weather", '{"city": "Paris"}'),
                    tool_call("call_2", "get_weather", '{"city": "Rome"}'),
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "22C, cloudy"}]},
        ],
        "tools": [WEATHER_TOOL_OPENAI],
    }
    request = openai_to_anthropic_request(body, MODEL)
    assert request["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "18C, sunny"}]},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "22C, cloudy"}]},
            ],
        },
    ]
    assert request["tools"] == [WEATHER_TOOL_ANTHROPIC]
    assert request["tool_choice"] == {"type": "auto"}


def test_request_assistant_text_comes_before_its_tool_use() -> None:
    message = {"role": "assistant", "content": "Let me check.", "tool_calls": [tool_call("c", "f", "")]}
    request = openai_to_anthropic_request({"messages": [user("x"), message]}, MODEL)
    assert request["messages"][1]["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "c", "name": "f", "input": {}},
    ]


def test_request_tool_results_come_before_text_in_a_merged_user_turn() -> None:
    body = {
        "messages": [
            user("q"),
            {"role": "assistant", "tool_calls": [tool_call("c1", "f", "{}")]},
            user("also, hurry"),
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ]
    }
    turn = openai_to_anthropic_request(body, MODEL)["messages"][2]
    assert [block["type"] for block in turn["content"]] == ["tool_result", "text"]


def test_request_consecutive_same_role_messages_merge() -> None:
    body = {
        "messages": [
            user("one"),
            user([{"type": "text", "text": "two"}]),
            {"role": "assistant", "content": "a"},
            {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
            user("three"),
        ]
    }
    messages = openai_to_anthropic_request(body, MODEL)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [b["text"] for b in messages[0]["content"]] == ["one", "two"]
    assert [b["text"] for b in messages[1]["content"]] == ["a", "b"]


def test_request_empty_messages_are_skipped_and_empty_tool_result_has_no_content() -> None:
    body = {
        "messages": [
            user("x"),
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": None, "tool_calls": [tool_call("c", "f", "{}")]},
            {"role": "tool", "tool_call_id": "c", "content": ""},
        ]
    }
    messages = openai_to_anthropic_request(body, MODEL)["messages"]
    assert messages[1] == {"role": "assistant", "content": [{"type": "tool_use", "id": "c", "name": "f", "input": {}}]}
    assert messages[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c"}]}


@pytest.mark.parametrize("arguments", ['{"city": "Par', "not json", "[1, 2]", '"a string"'])
def test_request_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    body = {"messages": [user("x"), {"role": "assistant", "tool_calls": [tool_call("c", "f", arguments)]}]}
    with pytest.raises(BadRequest) as info:
        openai_to_anthropic_request(body, MODEL)
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ([{"role": "function", "name": "f", "content": "x"}], "messages[0].role"),
        ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id"),
        ([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}], "messages[0].tool_calls[0]"),
        ([{"role": "user", "content": 42}], "messages[0].content"),
    ],
)
def test_request_malformed_messages_are_bad_requests(messages: list[JSON], param: str) -> None:
    with pytest.raises(BadRequest) as info:
        openai_to_anthropic_request({"messages": messages}, MODEL)
    assert info.value.param == param


def test_request_tool_without_parameters_gets_an_empty_object_schema() -> None:
    body = {"messages": [user("x")], "tools": [{"type": "function", "function": {"name": "now"}}]}
    assert openai_to_anthropic_request(body, MODEL)["tools"] == [
        {"name": "now", "input_schema": {"type": "object", "properties": {}}}
    ]


def test_request_non_function_tools_are_bad_requests() -> None:
    body = {"messages": [user("x")], "tools": [{"type": "custom", "custom": {"name": "grammar"}}]}
    with pytest.raises(BadRequest) as info:
        openai_to_anthropic_request(body, MODEL)
    assert info.value.param == "tools[0]"


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        (None, None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)
def test_request_tool_choice(choice: Any, parallel: Any, expected: JSON) -> None:
    body: JSON = {"messages": [user("x")], "tools": [WEATHER_TOOL_OPENAI]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    request = openai_to_anthropic_request(body, MODEL)
    assert request["tool_choice"] == expected
    assert request["tools"] == [WEATHER_TOOL_ANTHROPIC]


def test_request_tool_choice_without_tools_is_dropped() -> None:
    body = {"messages": [user("x")], "tool_choice": "required", "parallel_tool_calls": False}
    request = openai_to_anthropic_request(body, MODEL)
    assert "tool_choice" not in request and "tools" not in request


def test_request_invalid_tool_choice_is_a_bad_request() -> None:
    body = {"messages": [user("x")], "tools": [WEATHER_TOOL_OPENAI], "tool_choice": "sometimes"}
    with pytest.raises(BadRequest) as info:
        openai_to_anthropic_request(body, MODEL)
    assert info.value.param == "tool_choice"


# --- anthropic_to_openai_response ---------------------------------------------------------------


def anthropic_message(content: list[JSON], stop_reason: str = "end_turn", **usage: int) -> JSON:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 6, **usage},
    }


def test_response_text() -> None:
    result = anthropic_to_openai_response(anthropic_message([{"type": "text", "text": "Hi there!"}]), MODEL)
    ChatCompletion.model_validate(result)
    assert result["id"] == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert result["object"] == "chat.completion"
    assert isinstance(result["created"], int)
    assert result["model"] == MODEL
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi there!"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert result["usage"] == {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}


def test_response_text_and_tool_use() -> None:
    content: list[JSON] = [
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    result = anthropic_to_openai_response(anthropic_message(content, "tool_use"), MODEL)
    ChatCompletion.model_validate(result)
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking both."
    assert choice["message"]["tool_calls"] == [
        {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "toolu_01B", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}},
    ]


def test_response_tool_use_only_has_null_content_and_thinking_is_left_out() -> None:
    content: list[JSON] = [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQB..."},
        {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}},
    ]
    message = anthropic_to_openai_response(anthropic_message(content, "tool_use"), MODEL)["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"] == {"name": "now", "arguments": "{}"}


def test_response_multiple_text_blocks_are_joined() -> None:
    content: list[JSON] = [{"type": "text", "text": "The sky "}, {"type": "text", "text": "is blue.", "citations": []}]
    result = anthropic_to_openai_response(anthropic_message(content), MODEL)
    assert result["choices"][0]["message"]["content"] == "The sky is blue."


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("pause_turn", "stop"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
    ],
)
def test_response_finish_reason_mapping(stop_reason: Any, finish_reason: str) -> None:
    data = anthropic_message([{"type": "text", "text": "x"}])
    data["stop_reason"] = stop_reason
    assert anthropic_to_openai_response(data, MODEL)["choices"][0]["finish_reason"] == finish_reason


def test_response_usage_counts_cache_tokens_as_prompt_tokens() -> None:
    data = anthropic_message([], cache_creation_input_tokens=100, cache_read_input_tokens=1000)
    result = anthropic_to_openai_response(data, MODEL)
    ChatCompletion.model_validate(result)
    assert result["usage"] == {
        "prompt_tokens": 1112,
        "completion_tokens": 6,
        "total_tokens": 1118,
        "prompt_tokens_details": {"cached_tokens": 1000},
    }
    assert result["choices"][0]["message"]["content"] is None


# --- AnthropicToOpenAIStream --------------------------------------------------------------------

#: A streamed turn with text and two tool calls, as the Messages API sends it (event name, data).
ANTHROPIC_STREAM: list[tuple[str, JSON]] = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 472,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 2,
                },
            },
        },
    ),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Okay"}},
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ", checking both."}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_01Paris", "name": "get_weather", "input": {}},
        },
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city": '}},
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_01Rome", "name": "get_weather", "input": {}},
        },
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"city":'}},
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ' "Rome"}'}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 2}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 89},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]


def collect_openai(chunks: list[JSON]) -> JSON:
    """Accumulate OpenAI chunks the way SDK clients do (tool calls keyed by ``index``)."""
    content = ""
    calls: dict[int, JSON] = {}
    finish_reason = None
    usage = None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                entry = calls.setdefault(call["index"], {"id": None, "name": None, "arguments": ""})
                entry["id"] = call.get("id") or entry["id"]
                function = call.get("function") or {}
                entry["name"] = function.get("name") or entry["name"]
                entry["arguments"] += function.get("arguments") or ""
            finish_reason = choice["finish_reason"] or finish_reason
    return {
        "content": content,
        "tool_calls": [calls[i] for i in sorted(calls)],
        "finish_reason": finish_reason,
        "usage": usage,
    }


def run_anthropic_stream(events: list[tuple[str, JSON]]) -> tuple[AnthropicToOpenAIStream, list[JSON]]:
    stream = AnthropicToOpenAIStream(MODEL)
    chunks = [chunk for event, data in events for chunk in stream.feed(event, data)]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    return stream, chunks


def test_stream_text_and_two_tool_calls_chunk_by_chunk() -> None:
    stream, chunks = run_anthropic_stream(ANTHROPIC_STREAM)
    assert stream.finished
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"content": "Okay"},
        {"content": ", checking both."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_01Paris",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "toolu_01Rome",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": '{"city":'}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": ' "Rome"}'}}]},
        {},
    ]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks[:-1]] == [None] * (len(chunks) - 1)
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "tool_calls"
    assert last["usage"] == {"prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561}
    assert {chunk["id"] for chunk in chunks} == {"msg_014p7gG3wDgGV9EUtLvnow3U"}
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert {chunk["model"] for chunk in chunks} == {MODEL}
    assert all("usage" not in chunk for chunk in chunks[:-1])


def test_stream_accumulates_to_the_same_result_as_the_non_streaming_response() -> None:
    _, chunks = run_anthropic_stream(ANTHROPIC_STREAM)
    collected = collect_openai(chunks)
    assert collected["content"] == "Okay, checking both."
    assert collected["finish_reason"] == "tool_calls"
    assert [(c["id"], c["name"], orjson.loads(c["arguments"])) for c in collected["tool_calls"]] == [
        ("toolu_01Paris", "get_weather", {"city": "Paris"}),
        ("toolu_01Rome", "get_weather", {"city": "Rome"}),
    ]


def test_stream_tool_call_index_counts_tool_calls_only() -> None:
    # Text at Anthropic index 0 and 2, tools at 1 and 3: OpenAI indices must still be 0 and 1.
    events = [
        ANTHROPIC_STREAM[0],
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "t1", "name": "a", "input": {}},
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 3,
                "content_block": {"type": "tool_use", "id": "t2", "name": "b", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        ),
    ]
    _, chunks = run_anthropic_stream(events)
    indices = [call["index"] for chunk in chunks for call in chunk["choices"][0]["delta"].get("tool_calls", [])]
    assert indices == [0, 1, 1]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls")],
)
def test_stream_message_delta_finish_reason(stop_reason: str, finish_reason: str) -> None:
    stream = AnthropicToOpenAIStream(MODEL)
    data = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": 3},
    }
    [chunk] = stream.feed("message_delta", data)
    assert chunk["choices"][0]["finish_reason"] == finish_reason
    assert chunk["usage"]["completion_tokens"] == 3


def test_stream_usage_includes_cache_tokens_and_cumulative_message_delta_usage() -> None:
    stream = AnthropicToOpenAIStream(MODEL)
    start = {
        "type": "message_start",
        "message": {
            **ANTHROPIC_STREAM[0][1]["message"],
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 1},
        },
    }
    stream.feed("message_start", start)
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": None,
            "cache_read_input_tokens": 90,
            "output_tokens": 7,
        },
    }
    [chunk] = stream.feed("message_delta", delta)
    assert chunk["usage"] == {
        "prompt_tokens": 100,
        "completion_tokens": 7,
        "total_tokens": 107,
        "prompt_tokens_details": {"cached_tokens": 90},
    }


def test_stream_ping_stop_and_thinking_events_produce_nothing() -> None:
    stream = AnthropicToOpenAIStream(MODEL)
    quiet: list[tuple[str, JSON]] = [
        ("ping", {"type": "ping"}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "Eq=="}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("some_future_event", {"type": "some_future_event"}),
    ]
    for event, data in quiet:
        assert stream.feed(event, data) == []
    assert not stream.finished
    assert stream.feed("message_stop", {"type": "message_stop"}) == []
    assert stream.finished


def test_stream_event_name_falls_back_to_the_data_type() -> None:
    stream = AnthropicToOpenAIStream(MODEL)
    [chunk] = stream.feed("", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}})
    assert chunk["choices"][0]["delta"] == {"content": "x"}


def test_stream_error_event_raises_stream_broken() -> None:
    stream = AnthropicToOpenAIStream(MODEL)
    stream.feed(*ANTHROPIC_STREAM[0])
    with pytest.raises(StreamBroken, match="overloaded_error.*Overloaded"):
        stream.feed("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


# --- anthropic_to_openai_request ----------------------------------------------------------------


def test_reverse_request_minimal() -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello"}]}
    assert anthropic_to_openai_request(body) == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 1024,
    }


@pytest.mark.parametrize(
    "system",
    [
        "Be terse.\nReally.",
        [
            {"type": "text", "text": "Be terse."},
            {"type": "text", "text": "Really.", "cache_control": {"type": "ephemeral"}},
        ],
    ],
)
def test_reverse_request_system_string_or_blocks(system: Any) -> None:
    body = {"model": "m", "max_tokens": 1, "system": system, "messages": [{"role": "user", "content": "x"}]}
    assert anthropic_to_openai_request(body)["messages"][0] == {"role": "system", "content": "Be terse.\nReally."}


def test_reverse_request_all_parameters() -> None:
    body = {
        "model": "m",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "x"}],
        "temperature": 0.5,
        "top_p": 0.8,
        "top_k": 40,
        "stop_sequences": ["\n\nHuman:"],
        "stream": True,
        "metadata": {"user_id": "u-1"},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    assert anthropic_to_openai_request(body) == {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 50,
        "temperature": 0.5,
        "top_p": 0.8,
        "stop": ["\n\nHuman:"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u-1",
    }


def test_reverse_request_image_and_document_blocks() -> None:
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            "title": "a.pdf",
        },
        {"type": "text", "text": "Describe these."},
    ]
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": content}]}
    assert anthropic_to_openai_request(body)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
                {"type": "text", "text": "Describe these."},
            ],
        }
    ]


def test_reverse_request_tool_use_and_tool_results() -> None:
    body = {
        "model": "m",
        "max_tokens": 1,
        "tools": [WEATHER_TOOL_ANTHROPIC],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Two cities.", "signature": "Eq=="},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_B", "name": "get_weather", "input": {"city": "Rome"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_A", "content": "18C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_B",
                        "content": [{"type": "text", "text": "22C"}],
                        "is_error": False,
                    },
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
    }
    request = anthropic_to_openai_request(body)
    assert request["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_A",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_B",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_A", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_B", "content": "22C"},
        {"role": "user", "content": "Thanks"},
    ]
    assert request["tools"] == [WEATHER_TOOL_OPENAI]


def test_reverse_request_assistant_with_only_tool_use_has_null_content() -> None:
    content = [{"type": "tool_use", "id": "t", "name": "now", "input": {}}]
    body = {
        "model": "m",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": content}],
    }
    assert anthropic_to_openai_request(body)["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "t", "type": "function", "function": {"name": "now", "arguments": "{}"}}],
    }


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}, None),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
        ({"type": "any", "disable_parallel_tool_use": False}, "required", None),
    ],
)
def test_reverse_request_tool_choice(choice: JSON, expected: Any, parallel: Any) -> None:
    body = {
        "model": "m",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [WEATHER_TOOL_ANTHROPIC],
        "tool_choice": choice,
    }
    request = anthropic_to_openai_request(body)
    assert request["tool_choice"] == expected
    assert request.get("parallel_tool_calls") == parallel


def test_reverse_request_tool_without_schema_and_custom_type() -> None:
    body = {
        "model": "m",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "custom", "name": "now"}],
    }
    assert anthropic_to_openai_request(body)["tools"] == [
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "web_search_tool_result", "tool_use_id": "s"}]}]},
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
                ]
            },
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "tools[0]",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ],
)
def test_reverse_request_unsupported_input_is_a_bad_request(body: JSON, param: str) -> None:
    with pytest.raises(BadRequest) as info:
        anthropic_to_openai_request({"model": "m", "max_tokens": 1, **body})
    assert info.value.param == param


# --- openai_to_anthropic_response ---------------------------------------------------------------


def openai_completion(message: JSON, finish_reason: str | None = "stop", **usage: Any) -> JSON:
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "refusal": None, **message},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29, **usage},
        "system_fingerprint": "fp_fc9f1d7035",
    }


def test_reverse_response_text() -> None:
    result = openai_to_anthropic_response(openai_completion({"content": "Hello!"}), MODEL)
    Message.model_validate(result)
    assert result == {
        "id": "msg_B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 19, "output_tokens": 10},
    }


def test_reverse_response_tool_calls() -> None:
    message = {
        "content": None,
        "tool_calls": [tool_call("call_A", "get_weather", '{"city":"Paris"}'), tool_call("call_B", "now", "")],
    }
    result = openai_to_anthropic_response(openai_completion(message, "tool_calls"), MODEL)
    Message.model_validate(result)
    assert result["content"] == [
        {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_B", "name": "now", "input": {}},
    ]
    assert result["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_reverse_response_stop_reason_mapping(finish_reason: Any, stop_reason: str) -> None:
    result = openai_to_anthropic_response(openai_completion({"content": "x"}, finish_reason), MODEL)
    assert result["stop_reason"] == stop_reason


def test_reverse_response_tool_calls_with_finish_reason_stop_still_stop_for_tool_use() -> None:
    message = {"content": None, "tool_calls": [tool_call("c", "now", "{}")]}
    assert openai_to_anthropic_response(openai_completion(message, "stop"), MODEL)["stop_reason"] == "tool_use"


def test_reverse_response_cached_tokens_move_out_of_input_tokens() -> None:
    data = openai_completion({"content": "x"}, prompt_tokens=1000, prompt_tokens_details={"cached_tokens": 800})
    result = openai_to_anthropic_response(data, MODEL)
    Message.model_validate(result)
    assert result["usage"] == {"input_tokens": 200, "output_tokens": 10, "cache_read_input_tokens": 800}


def test_reverse_response_without_id_or_usage() -> None:
    result = openai_to_anthropic_response({"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]}, MODEL)
    Message.model_validate(result)
    assert result["id"].startswith("msg_")
    assert result["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_reverse_response_invalid_tool_arguments_are_an_upstream_error() -> None:
    message = {"content": None, "tool_calls": [tool_call("c", "f", '{"broken')]}
    with pytest.raises(UpstreamError) as info:
        openai_to_anthropic_response(openai_completion(message, "tool_calls"), MODEL)
    assert info.value.status_code == 502
    assert not info.value.retryable


# --- OpenAIToAnthropicStream --------------------------------------------------------------------


def openai_chunk(delta: JSON, finish_reason: str | None = None, *, usage: JSON | None = None) -> JSON:
    chunk: JSON = {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


#: A streamed OpenAI turn with text and two parallel tool calls, then the include_usage chunk.
OPENAI_STREAM: list[JSON] = [
    openai_chunk({"role": "assistant", "content": "", "refusal": None}),
    openai_chunk({"content": "Checking"}),
    openai_chunk({"content": " both."}),
    openai_chunk(
        {
            "tool_calls": [
                {"index": 0, "id": "call_P", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            ]
        }
    ),
    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}),
    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "Paris"}'}}]}),
    openai_chunk(
        {
            "tool_calls": [
                {"index": 1, "id": "call_R", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            ]
        }
    ),
    openai_chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"city": "Rome"}'}}]}),
    openai_chunk({}, "tool_calls"),
    {**openai_chunk({}), "choices": [], "usage": {"prompt_tokens": 80, "completion_tokens": 40, "total_tokens": 120}},
]


def collect_anthropic(events: list[tuple[str, JSON]]) -> JSON:
    """Rebuild the final message from Anthropic events, as the SDK's stream accumulator does."""
    message: JSON = {}
    partial: dict[int, str] = {}
    for name, data in events:
        assert data["type"] == name
        STREAM_EVENT.validate_python(data)
        if name == "message_start":
            message = {**data["message"], "content": []}
        elif name == "content_block_start":
            assert data["index"] == len(message["content"])
            message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            block, delta = message["content"][data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop" and data["index"] in partial:
            message["content"][data["index"]]["input"] = orjson.loads(partial[data["index"]])
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"] = {**message["usage"], **data["usage"]}
    return message


def test_reverse_stream_event_sequence() -> None:
    stream = OpenAIToAnthropicStream(MODEL)
    events = [event for chunk in OPENAI_STREAM for event in stream.feed(chunk)] + stream.finish()
    assert [(name, data.get("index")) for name, data in events] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    start = events[0][1]["message"]
    assert start["id"] == "msg_123" and start["model"] == MODEL and start["content"] == []
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    assert events[5][1]["content_block"] == {"type": "tool_use", "id": "call_P", "name": "get_weather", "input": {}}
    assert events[6][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"city"'}
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"input_tokens": 80, "output_tokens": 40},
    }
    assert events[-1][1] == {"type": "message_stop"}


def test_reverse_stream_accumulates_to_the_full_message() -> None:
    stream = OpenAIToAnthropicStream(MODEL)
    events = [event for chunk in OPENAI_STREAM for event in stream.feed(chunk)] + stream.finish()
    message = collect_anthropic(events)
    Message.model_validate(message)
    assert message["content"] == [
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "call_P", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_R", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    assert message["stop_reason"] == "tool_use"


def test_reverse_stream_text_only_with_length_finish() -> None:
    stream = OpenAIToAnthropicStream(MODEL)
    chunks = [openai_chunk({"role": "assistant", "content": "Hi"}), openai_chunk({"content": "!"}, "length")]
    events = [event for chunk in chunks for event in stream.feed(chunk)] + stream.finish()
    message = collect_anthropic(events)
    assert message["content"] == [{"type": "text", "text": "Hi!"}]
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_reverse_stream_empty_upstream_still_yields_a_well_formed_message() -> None:
    events = OpenAIToAnthropicStream(MODEL).finish()
    assert [name for name, _ in events] == ["message_start", "message_delta", "message_stop"]
    message = collect_anthropic(events)
    assert message["content"] == [] and message["stop_reason"] == "end_turn"


def test_reverse_stream_whole_tool_calls_without_index_in_one_chunk() -> None:
    # Some OpenAI-compatible servers send each complete call at once, keyed by id only.
    stream = OpenAIToAnthropicStream(MODEL)
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "a", "arguments": '{"x": 1}'}},
        {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
    ]
    events = stream.feed(openai_chunk({"role": "assistant", "tool_calls": calls}, "tool_calls")) + stream.finish()
    message = collect_anthropic(events)
    assert message["content"] == [
        {"type": "tool_use", "id": "c1", "name": "a", "input": {"x": 1}},
        {"type": "tool_use", "id": "c2", "name": "b", "input": {}},
    ]
    assert message["stop_reason"] == "tool_use"


def test_reverse_stream_reused_index_with_a_new_id_starts_a_new_block() -> None:
    stream = OpenAIToAnthropicStream(MODEL)
    chunks = [
        openai_chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "a", "arguments": "{}"}}]}),
        openai_chunk({"tool_calls": [{"index": 0, "id": "c2", "function": {"name": "b", "arguments": "{}"}}]}),
    ]
    events = [event for chunk in chunks for event in stream.feed(chunk)] + stream.finish()
    assert [block["id"] for block in collect_anthropic(events)["content"]] == ["c1", "c2"]


def test_reverse_stream_text_after_tool_call_opens_a_new_text_block() -> None:
    stream = OpenAIToAnthropicStream(MODEL)
    chunks = [
        openai_chunk({"content": "a"}),
        openai_chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]}),
        openai_chunk({"content": "b"}),
    ]
    events = [event for chunk in chunks for event in stream.feed(chunk)] + stream.finish()
    assert [block["type"] for block in collect_anthropic(events)["content"]] == ["text", "tool_use", "text"]


# --- round trips --------------------------------------------------------------------------------


def test_round_trip_openai_request_through_anthropic_and_back() -> None:
    original = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [tool_call("call_1", "get_weather", '{"city":"Paris"}')],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "assistant", "content": "It is 18C."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And this?"},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                ],
            },
        ],
        "tools": [WEATHER_TOOL_OPENAI],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "max_tokens": 300,
        "temperature": 0.1,
        "stop": ["STOP"],
        "user": "u",
    }
    anthropic = openai_to_anthropic_request(original, "m")
    assert anthropic_to_openai_request(anthropic) == original


def test_round_trip_anthropic_response_through_openai_and_back() -> None:
    content: list[JSON] = [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris", "days": [1, 2]}},
    ]
    original = anthropic_message(content, "tool_use")
    back = openai_to_anthropic_response(anthropic_to_openai_response(original, MODEL), MODEL)
    assert back == {**original, "model": MODEL}


def test_round_trip_anthropic_stream_through_openai_chunks_and_back() -> None:
    _, chunks = run_anthropic_stream(ANTHROPIC_STREAM)
    reverse = OpenAIToAnthropicStream(MODEL)
    events = [event for chunk in chunks for event in reverse.feed(chunk)] + reverse.finish()
    message = collect_anthropic(events)
    assert message["id"] == "msg_014p7gG3wDgGV9EUtLvnow3U"
    assert message["content"] == [
        {"type": "text", "text": "Okay, checking both."},
        {"type": "tool_use", "id": "toolu_01Paris", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_01Rome", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {"input_tokens": 472, "output_tokens": 89}


# --- errors and the adapter's non-network surface -----------------------------------------------


def test_anthropic_error_body() -> None:
    assert anthropic_error_body("Overloaded", "overloaded_error") == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def make_target(base_url: str | None = "https://api.anthropic.com/", secret: str | None = "sk-ant-test") -> Target:
    key = KeyRuntime(
        id="k1",
        name="k1",
        provider="anthropic",
        secret=secret,
        models=AllowList(["*"]),
        weight=1.0,
        aliases={},
        aliases_folded={},
    )
    provider = ProviderRuntime(
        name="anthropic",
        kind="anthropic",
        base_url=base_url,
        timeout=5.0,
        max_retries=0,
        backoff_initial=0.1,
        backoff_max=1.0,
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
        keys=(key,),
    )
    return Target(provider=provider, key=key, model=MODEL)


def test_adapter_url_and_headers() -> None:
    adapter, target = AnthropicAdapter(), make_target()
    assert adapter.url(target) == "https://api.anthropic.com/v1/messages"
    assert adapter.headers(target) == {
        "x-api-key": "sk-ant-test",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "anthropic-beta": "prompt-caching-2024-07-31",
    }


def test_adapter_without_base_url_is_a_configuration_error() -> None:
    with pytest.raises(BadRequest) as info:
        AnthropicAdapter().url(make_target(base_url=None))
    assert info.value.status_code == 500 and info.value.error_type == "configuration_error"


async def test_adapter_has_no_embeddings() -> None:
    with pytest.raises(BadRequest, match="anthropic does not offer embeddings") as info:
        await AnthropicAdapter().embeddings(None, make_target(), {"input": "x"})  # type: ignore[arg-type]
    assert info.value.status_code == 400
