"""Anthropic-format callers on top of any provider: Anthropic requests to OpenAI form, and OpenAI
responses and streams back to the Anthropic Messages API format (the reverse of ``anthropic_translate``).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from heimdall.errors import BadRequest, UpstreamError
from heimdall.llm.providers.anthropic_translate import (
    JSON,
    STOP_REASONS,
    openai_tool_call,
)

__all__ = ["OpenAIToAnthropicStream", "anthropic_to_openai_request", "openai_to_anthropic_response"]


# --- Anthropic request -> OpenAI request -----------------------------------------------------------


def _openai_image_part(block: JSON, param: str) -> JSON:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url":
        url = str(source.get("url"))
    else:
        raise BadRequest("image sources must be base64 or url", param=param)
    return {"type": "image_url", "image_url": {"url": url}}


def _openai_document_part(block: JSON, param: str) -> JSON:
    source = block.get("source") or {}
    if source.get("type") != "base64":
        raise BadRequest("only base64 document sources are supported", param=param)
    file: JSON = {"file_data": f"data:{source.get('media_type')};base64,{source.get('data')}"}
    if block.get("title"):
        file["filename"] = block["title"]
    return {"type": "file", "file": file}


def _block_text(content: Any) -> str:
    """Text of a string or of the text blocks of a block list (system prompts, tool results)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text") or "" for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _from_user(content: Any, param: str) -> list[JSON]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise BadRequest("message content must be a string or an array of content blocks", param=param)
    tool_messages: list[JSON] = []
    parts: list[JSON] = []
    for number, block in enumerate(content):
        where = f"{param}[{number}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif kind == "image":
            parts.append(_openai_image_part(block, where))
        elif kind == "document":
            parts.append(_openai_document_part(block, where))
        elif kind == "tool_result":
            # OpenAI tool messages carry text only; image blocks inside a tool result are dropped.
            text = _block_text(block.get("content"))
            tool_messages.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
        else:
            raise BadRequest(f"content block type {kind!r} is not supported here", param=where)
    messages = tool_messages
    if len(parts) == 1 and parts[0]["type"] == "text":
        messages.append({"role": "user", "content": parts[0]["text"]})
    elif parts:
        messages.append({"role": "user", "content": parts})
    return messages


def _from_assistant(content: Any, param: str) -> JSON:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise BadRequest("message content must be a string or an array of content blocks", param=param)
    texts: list[str] = []
    tool_calls: list[JSON] = []
    for number, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            tool_calls.append(openai_tool_call(block))
        elif kind not in ("thinking", "redacted_thinking"):
            raise BadRequest(f"content block type {kind!r} is not supported here", param=f"{param}[{number}]")
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _openai_tools(tools: Any) -> list[JSON]:
    if not isinstance(tools, list):
        raise BadRequest("tools must be an array", param="tools")
    converted: list[JSON] = []
    for number, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom") or not tool.get("name"):
            raise BadRequest("only client tools with a name and input_schema are supported", param=f"tools[{number}]")
        function: JSON = {"name": tool["name"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
        converted.append({"type": "function", "function": function})
    return converted


def _openai_tool_choice(choice: JSON) -> str | JSON:
    kind = choice.get("type")
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    mapped = {"auto": "auto", "any": "required", "none": "none"}.get(str(kind))
    if mapped is None:
        raise BadRequest("tool_choice.type must be auto, any, tool or none", param="tool_choice")
    return mapped


def anthropic_to_openai_request(body: JSON) -> JSON:
    """Translate an Anthropic ``POST /v1/messages`` body into an OpenAI chat completion request.

    ``model`` is passed through unchanged; ``thinking``, ``top_k`` and ``cache_control`` are dropped.

    Raises:
        BadRequest: for roles, content blocks or tools that have no OpenAI counterpart.
    """
    messages: list[JSON] = []
    system = _block_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages must be a non-empty array", param="messages")
    for number, message in enumerate(raw):
        where = f"messages[{number}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            messages.extend(_from_user(message.get("content"), f"{where}.content"))
        elif role == "assistant":
            messages.append(_from_assistant(message.get("content"), f"{where}.content"))
        else:
            raise BadRequest(f"message role {role!r} is not supported", param=f"{where}.role")
    request: JSON = {"model": body.get("model"), "messages": messages}
    if body.get("max_tokens") is not None:
        request["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            request[name] = body[name]
    if body.get("stop_sequences"):
        request["stop"] = list(body["stop_sequences"])
    if body.get("stream"):
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    if body.get("tools"):
        request["tools"] = _openai_tools(body["tools"])
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        request["tool_choice"] = _openai_tool_choice(choice)
        if choice.get("disable_parallel_tool_use"):
            request["parallel_tool_calls"] = False
    user_id = (body.get("metadata") or {}).get("user_id")
    if isinstance(user_id, str) and user_id:
        request["user"] = user_id
    return request


# --- OpenAI response -> Anthropic response ---------------------------------------------------------


def _message_id(openai_id: Any) -> str:
    if isinstance(openai_id, str) and openai_id:
        return openai_id if openai_id.startswith("msg_") else "msg_" + openai_id.removeprefix("chatcmpl-")
    return f"msg_{uuid.uuid4().hex[:24]}"


def _anthropic_usage(usage: JSON) -> JSON:
    """The inverse of ``openai_usage``: cached prompt tokens move out of ``input_tokens``."""
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    result: JSON = {
        "input_tokens": max(int(usage.get("prompt_tokens") or 0) - cached, 0),
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }
    if cached:
        result["cache_read_input_tokens"] = cached
    return result


def _parse_arguments(arguments: Any) -> JSON:
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) and arguments else arguments or {}
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamError(
            "upstream returned tool call arguments that are not a JSON object", status_code=502, retryable=False
        )
    return parsed


def _stop_reason(finish_reason: Any, has_tools: bool) -> str:
    # Some OpenAI-compatible servers finish a tool-calling turn with "stop"; Anthropic clients
    # look for "tool_use" to run the tools.
    if has_tools and finish_reason in (None, "stop"):
        return "tool_use"
    if isinstance(finish_reason, str) and finish_reason in STOP_REASONS:
        return STOP_REASONS[finish_reason]
    return "end_turn"


def openai_to_anthropic_response(data: JSON, model: str) -> JSON:
    """Translate an OpenAI ``chat.completion`` into an Anthropic ``message``.

    Raises:
        UpstreamError: when a tool call's arguments are not a JSON object (Anthropic needs one).
    """
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[JSON] = []
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict) and p.get("type") == "text")
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name"),
                "input": _parse_arguments(function.get("arguments")),
            }
        )
    return {
        "id": _message_id(data.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _stop_reason(choice.get("finish_reason"), bool(message.get("tool_calls"))),
        "stop_sequence": None,
        "usage": _anthropic_usage(data.get("usage") or {}),
    }


class OpenAIToAnthropicStream:
    """Turns OpenAI ``chat.completion.chunk`` dicts into Anthropic SSE ``(event, data)`` pairs.

    The sequence follows the Anthropic streaming spec: ``message_start``, then per content block
    ``content_block_start``/``content_block_delta``.../``content_block_stop``, then ``message_delta``
    (stop reason and usage) and ``message_stop``, the last two from ``finish()``.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self._started = False
        self._id = f"msg_{uuid.uuid4().hex[:24]}"
        self._blocks = 0
        self._open: int | None = None  # Anthropic index of the block now open
        self._text_block = -1
        self._tools: dict[Any, int] = {}  # OpenAI tool call index -> Anthropic block index
        self._tool_ids: dict[Any, str] = {}
        self._last_tool: Any = None
        self.finish_reason_of: str | None = None
        self._usage: JSON = {}

    def _start(self, chunk: JSON | None) -> list[tuple[str, JSON]]:
        if self._started:
            return []
        self._started = True
        if chunk is not None:
            self._id = _message_id(chunk.get("id"))
        message: JSON = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _anthropic_usage(self._usage),
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[tuple[str, JSON]]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _open_block(self, block: JSON) -> tuple[int, list[tuple[str, JSON]]]:
        events = self._close()
        index = self._open = self._blocks
        self._blocks += 1
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        return index, events

    def _delta(self, index: int, delta: JSON) -> tuple[str, JSON]:
        return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}

    def _text(self, text: str) -> list[tuple[str, JSON]]:
        events: list[tuple[str, JSON]] = []
        if self._open is None or self._open != self._text_block:
            self._text_block, events = self._open_block({"type": "text", "text": ""})
        events.append(self._delta(self._text_block, {"type": "text_delta", "text": text}))
        return events

    def _tool_call(self, call: JSON) -> list[tuple[str, JSON]]:
        events: list[tuple[str, JSON]] = []
        # OpenAI keys fragments by "index"; some compatible servers send only "id", or reuse an index.
        key = call["index"] if "index" in call else call.get("id") or self._last_tool
        call_id = call.get("id")
        function = call.get("function") or {}
        if key not in self._tools or (call_id and call_id != self._tool_ids.get(key)):
            call_id = call_id or f"toolu_{uuid.uuid4().hex[:24]}"
            block: JSON = {"type": "tool_use", "id": call_id, "name": function.get("name"), "input": {}}
            self._tools[key], events = self._open_block(block)
            self._tool_ids[key] = call_id
        self._last_tool = key
        if function.get("arguments"):
            # A late fragment of a call whose block was already closed still names that block's index.
            events.append(
                self._delta(self._tools[key], {"type": "input_json_delta", "partial_json": function["arguments"]})
            )
        return events

    def feed(self, chunk: JSON) -> list[tuple[str, JSON]]:
        """Translate one OpenAI chunk into Anthropic ``(event name, data)`` pairs."""
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        events = self._start(chunk)
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            for name in ("content", "refusal"):
                if isinstance(delta.get(name), str) and delta[name]:
                    events += self._text(delta[name])
            for call in delta.get("tool_calls") or []:
                events += self._tool_call(call)
            if choice.get("finish_reason"):
                self.finish_reason_of = choice["finish_reason"]
        return events

    def finish(self) -> list[tuple[str, JSON]]:
        """Close the open block and end the message; call once after the last chunk."""
        events = self._start(None)
        events += self._close()
        usage = _anthropic_usage(self._usage)
        delta = {"stop_reason": _stop_reason(self.finish_reason_of, bool(self._tools)), "stop_sequence": None}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events
