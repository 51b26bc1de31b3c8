"""A scripted model behind the OpenAI chat completions wire format (JSON and SSE), for the demo.

It needs no network and no key, and does one thing: use the notes tools it is offered.

- Tools offered (the gateway names them ``<client>-list_notes``, ``<client>-add_note``) and no tool
  result yet for the last user message: ask for ``list_notes``, or ``add_note`` with the text when
  that message starts with "remember …" or "note …".
- A tool result after the last user message: answer with text that sums the result up.
- Otherwise: a short text saying what it can do.

Usage counts words, so token figures in the gateway's metrics move with the conversation.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["MODEL_ID", "ScriptedReply", "create_scripted_model_app", "next_reply"]

MODEL_ID = "notes-assistant"
LIST_TOOL = "list_notes"
ADD_TOOL = "add_note"
_REMEMBER = re.compile(r"^\s*(?:please\s+)?(?:remember|note)(?:\s+that)?\b[\s:,-]*(?P<text>.+)$", re.I | re.S)
NO_TOOLS_TEXT = (
    "I am the Heimdall demo model. I can read and add notes once the gateway offers me the notes tools: "
    'ask "What are my notes?" or "Remember to water the plants".'
)


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """The assistant message to send: text, or one tool call (name and JSON arguments)."""

    text: str | None = None
    tool_name: str | None = None
    tool_arguments: dict[str, Any] = field(default_factory=dict)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict)).strip()
    return ""


def _offered_tools(body: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


def _tool_named(offered: list[str], bare: str) -> str | None:
    """The offered tool for ``bare`` (``list_notes`` is offered as e.g. ``notes-list_notes``)."""
    return next((name for name in offered if name == bare or name.endswith(f"-{bare}")), None)


def _summary(tool_name: str, result: str) -> str:
    """One sentence about a tool result; ``list_notes`` results are JSON lists, or one note per line."""
    if tool_name == LIST_TOOL or tool_name.endswith(f"-{LIST_TOOL}"):
        try:
            parsed = json.loads(result)
        except ValueError:
            parsed = [line for line in result.splitlines() if line.strip()]
        notes = [str(note) for note in parsed] if isinstance(parsed, list) else [str(parsed)]
        if not notes:
            return "You have no notes yet."
        listed = "\n".join(f"- {note}" for note in notes)
        return f"You have {len(notes)} note{'s' if len(notes) != 1 else ''}:\n{listed}"
    if tool_name == ADD_TOOL or tool_name.endswith(f"-{ADD_TOOL}"):
        return f"Done, I added it to your notes ({result})."
    return f"{tool_name} answered: {result}"


def next_reply(body: dict[str, Any]) -> ScriptedReply:
    """What the model says next to a chat completions request body."""
    messages = [message for message in body.get("messages") or [] if isinstance(message, dict)]
    last_user = max((i for i, message in enumerate(messages) if message.get("role") == "user"), default=-1)
    results = [message for message in messages[last_user + 1 :] if message.get("role") == "tool"]
    if results:
        asked: dict[str, str] = {}
        for message in messages[last_user + 1 :]:
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                asked[str(call.get("id"))] = str(function.get("name", "tool"))
        parts = [_summary(asked.get(str(m.get("tool_call_id")), "tool"), _text_of(m.get("content"))) for m in results]
        return ScriptedReply(text="\n\n".join(parts))
    offered = _offered_tools(body)
    question = _text_of(messages[last_user].get("content")) if last_user >= 0 else ""
    remember = _REMEMBER.match(question)
    add_tool = _tool_named(offered, ADD_TOOL)
    if remember and add_tool:
        return ScriptedReply(tool_name=add_tool, tool_arguments={"text": remember.group("text").strip()})
    list_tool = _tool_named(offered, LIST_TOOL)
    if list_tool:
        return ScriptedReply(tool_name=list_tool)
    return ScriptedReply(text=NO_TOOLS_TEXT)


def _words(text: str) -> int:
    return len(text.split())


def _usage(body: dict[str, Any], reply: ScriptedReply) -> dict[str, int]:
    prompt = sum(_words(_text_of(m.get("content"))) for m in body.get("messages") or [] if isinstance(m, dict))
    completion = _words(reply.text or "") + (1 + len(reply.tool_arguments) if reply.tool_name else 0)
    return {
        "prompt_tokens": max(prompt, 1),
        "completion_tokens": completion,
        "total_tokens": max(prompt, 1) + completion,
    }


def _tool_call(reply: ScriptedReply, call_id: str) -> dict[str, Any]:
    arguments = json.dumps(reply.tool_arguments, separators=(",", ":"))
    return {"id": call_id, "type": "function", "function": {"name": reply.tool_name, "arguments": arguments}}


def completion(body: dict[str, Any], reply: ScriptedReply, model: str) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_name:
        message["tool_calls"] = [_tool_call(reply, f"call_{secrets.token_hex(8)}")]
    return {
        "id": f"chatcmpl-{secrets.token_hex(8)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_name else "stop"}],
        "usage": _usage(body, reply),
    }


def _sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


def completion_chunks(body: dict[str, Any], reply: ScriptedReply, model: str) -> Iterator[bytes]:
    """The same answer as ``chat.completion.chunk`` SSE frames, ending with ``[DONE]``."""
    base = {"id": f"chatcmpl-{secrets.token_hex(8)}", "object": "chat.completion.chunk", "created": int(time.time())}
    base["model"] = model

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""})
    for piece in re.findall(r"\s*\S+\s*", reply.text or ""):
        yield chunk({"content": piece})
    if reply.tool_name:
        yield chunk({"tool_calls": [{"index": 0, **_tool_call(reply, f"call_{secrets.token_hex(8)}")}]})
    yield chunk({}, "tool_calls" if reply.tool_name else "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        yield _sse({**base, "choices": [], "usage": _usage(body, reply)})
    yield _sse("[DONE]")


async def _chat_completions(request: Request) -> Response:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        error = {"message": "a JSON body with messages is required", "type": "invalid_request_error"}
        return JSONResponse({"error": error}, status_code=400)
    reply = next_reply(body)
    model = str(body.get("model") or MODEL_ID)
    if body.get("stream"):
        return StreamingResponse(completion_chunks(body, reply, model), media_type="text/event-stream")
    return JSONResponse(completion(body, reply, model))


async def _models(_request: Request) -> Response:
    model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "heimdall-demo"}
    return JSONResponse({"object": "list", "data": [model]})


def create_scripted_model_app() -> Starlette:
    """``POST /v1/chat/completions`` and ``GET /v1/models``."""
    return Starlette(
        routes=[
            Route("/v1/chat/completions", _chat_completions, methods=["POST"]),
            Route("/v1/models", _models, methods=["GET"]),
        ]
    )
