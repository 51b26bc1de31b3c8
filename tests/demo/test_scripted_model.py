"""The demo's scripted model: what it says next, and its OpenAI wire format as the openai SDK reads it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from heimdall.demo.scripted_model import NO_TOOLS_TEXT, create_scripted_model_app, next_reply
from tests.support.servers import RunningServer, serve_in_thread

NOTES_TOOLS = [
    {"type": "function", "function": {"name": "notes-list_notes", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "notes-add_note", "parameters": {"type": "object"}}},
]


def ask(question: str, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": question}]}
    if tools is not None:
        body["tools"] = tools
    return body


def answered(body: dict[str, Any], tool: str, result: str) -> dict[str, Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": tool, "arguments": "{}"}}
    messages = [
        *body["messages"],
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": result},
    ]
    return {**body, "messages": messages}


def test_without_notes_tools_it_says_what_it_can_do() -> None:
    assert next_reply(ask("hello")).text == NO_TOOLS_TEXT
    other = [{"type": "function", "function": {"name": "weather-get"}}]
    assert next_reply(ask("What are my notes?", other)).text == NO_TOOLS_TEXT


@pytest.mark.parametrize(
    ("question", "tool", "arguments"),
    [
        ("What are my notes?", "notes-list_notes", {}),
        ("Remember to water the plants", "notes-add_note", {"text": "to water the plants"}),
        ("note: buy milk", "notes-add_note", {"text": "buy milk"}),
        ("Please remember that the code is 42", "notes-add_note", {"text": "the code is 42"}),
    ],
)
def test_it_asks_for_the_offered_notes_tool(question: str, tool: str, arguments: dict[str, str]) -> None:
    reply = next_reply(ask(question, NOTES_TOOLS))
    assert (reply.text, reply.tool_name, reply.tool_arguments) == (None, tool, arguments)


def test_remember_without_an_add_tool_lists_instead() -> None:
    reply = next_reply(ask("remember this", NOTES_TOOLS[:1]))
    assert reply.tool_name == "notes-list_notes"


def test_a_tool_result_is_summed_up_once() -> None:
    body = ask("What are my notes?", NOTES_TOOLS)
    assert next_reply(answered(body, "notes-list_notes", '["a", "b"]')).text == "You have 2 notes:\n- a\n- b"
    assert next_reply(answered(body, "notes-list_notes", "only one")).text == "You have 1 note:\n- only one"
    assert next_reply(answered(body, "notes-list_notes", "[]")).text == "You have no notes yet."
    added = next_reply(answered(ask("note x", NOTES_TOOLS), "notes-add_note", "saved note 3")).text
    assert added == "Done, I added it to your notes (saved note 3)."
    # A new question after an answered one asks again.
    again = answered(body, "notes-list_notes", "[]")
    again["messages"].append({"role": "user", "content": "And now?"})
    assert next_reply(again).tool_name == "notes-list_notes"


@pytest.fixture(scope="module")
def model() -> Iterator[RunningServer]:
    with serve_in_thread(create_scripted_model_app()) as server:
        yield server


def test_openai_sdk_reads_its_answers_and_streams(model: RunningServer) -> None:
    with openai.OpenAI(base_url=f"{model.url}/v1", api_key="anything", max_retries=0) as client:
        tools: Any = NOTES_TOOLS
        called = client.chat.completions.create(
            model="notes-assistant", messages=[{"role": "user", "content": "remember tea"}], tools=tools
        )
        call = called.choices[0].message.tool_calls
        assert called.choices[0].finish_reason == "tool_calls" and call is not None
        assert call[0].type == "function" and call[0].function.name == "notes-add_note"
        assert json.loads(call[0].function.arguments) == {"text": "tea"}
        assert called.usage is not None and called.usage.total_tokens == called.usage.prompt_tokens + 2

        stream = client.chat.completions.create(
            model="notes-assistant",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == NO_TOOLS_TEXT
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(NO_TOOLS_TEXT.split())
        assert [model.id for model in client.models.list()] == ["notes-assistant"]
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="notes-assistant", messages="nope")  # type: ignore[arg-type]
