"""Pure translations between OpenAI chat completions and the Anthropic Messages API, both ways.

Forward (an OpenAI-format caller, an Anthropic upstream): ``openai_to_anthropic_request``,
``anthropic_to_openai_response`` and ``AnthropicToOpenAIStream``. Reverse (an Anthropic-format
caller, any upstream): ``anthropic_to_openai_request``, ``openai_to_anthropic_response`` and
``OpenAIToAnthropicStream``. Wire formats: https://docs.anthropic.com/en/api/messages,
https://docs.anthropic.com/en/docs/build-with-claude/streaming and
https://platform.openai.com/docs/api-reference/chat. No I/O here.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from heimdall.errors import BadRequest
from heimdall.llm.providers.base import StreamBroken

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "AnthropicToOpenAIStream",
    "anthropic_error_body",
    "anthropic_to_openai_response",
    "openai_to_anthropic_request",
]

JSON = dict[str, Any]

#: Anthropic requires ``max_tokens``; OpenAI callers may leave it out.
DEFAULT_MAX_TOKENS = 4096

_FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def anthropic_error_body(message: str, error_type: str) -> JSON:
    """The Anthropic error shape: ``{"type": "error", "error": {"type": ..., "message": ...}}``."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _now() -> int:
    return int(time.time())


def finish_reason_of(stop_reason: str | None) -> str:
    return _FINISH_REASONS.get(stop_reason or "", "stop")


# --- OpenAI request -> Anthropic request -----------------------------------------------------------


def _image_block(url: str, param: str) -> JSON:
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, *options = header.split(";")
        if not comma or "base64" not in options or not media_type:
            raise BadRequest("image data URLs must look like data:<media type>;base64,<data>", param=param)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise BadRequest("image_url must be an http(s) URL or a base64 data URL", param=param)


def _document_block(file: JSON, param: str) -> JSON:
    data_url = file.get("file_data")
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise BadRequest("only inline file parts (file.file_data as a base64 data URL) are supported", param=param)
    image = _image_block(data_url, param)  # same data URL grammar
    return {"type": "document", "source": image["source"]}


def _openai_parts(content: Any, param: str) -> list[JSON]:
    """OpenAI message content (string, parts or None) as Anthropic content blocks, empty text left out."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise BadRequest("message content must be a string or an array of content parts", param=param)
    blocks: list[JSON] = []
    for number, part in enumerate(content):
        where = f"{param}[{number}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise BadRequest(f"a {kind} content part needs a string {kind!r}", param=where)
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise BadRequest("an image_url content part needs image_url.url", param=where)
            blocks.append(_image_block(url, where))
        elif kind == "file" and isinstance(part.get("file"), dict):
            blocks.append(_document_block(part["file"], where))
        else:
            raise BadRequest(f"content part type {kind!r} is not supported by anthropic", param=where)
    return blocks


def _text_of(content: Any, param: str) -> str:
    return "\n".join(block["text"] for block in _openai_parts(content, param) if block["type"] == "text")


def _tool_use_blocks(tool_calls: Any, param: str) -> list[JSON]:
    if not isinstance(tool_calls, list):
        raise BadRequest("tool_calls must be an array", param=param)
    blocks: list[JSON] = []
    for number, call in enumerate(tool_calls):
        where = f"{param}[{number}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest("a tool call needs function.name", param=where)
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            raise BadRequest("tool call arguments are not valid JSON", param=f"{where}.function.arguments") from None
        if not isinstance(parsed, dict):
            raise BadRequest("tool call arguments must be a JSON object", param=f"{where}.function.arguments")
        call_id = call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}"
        blocks.append({"type": "tool_use", "id": call_id, "name": function["name"], "input": parsed})
    return blocks


def _append(messages: list[JSON], role: str, blocks: list[JSON]) -> None:
    # Anthropic requires user and assistant turns to alternate, so same-role neighbours merge.
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def _convert_messages(raw: Any) -> tuple[list[str], list[JSON]]:
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages must be a non-empty array", param="messages")
    system: list[str] = []
    messages: list[JSON] = []
    for number, message in enumerate(raw):
        where = f"messages[{number}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            text = _text_of(message.get("content"), f"{where}.content")
            if text:
                system.append(text)
        elif role == "user":
            _append(messages, "user", _openai_parts(message.get("content"), f"{where}.content"))
        elif role == "assistant":
            blocks = _openai_parts(message.get("content"), f"{where}.content")
            if message.get("tool_calls"):
                blocks += _tool_use_blocks(message["tool_calls"], f"{where}.tool_calls")
            _append(messages, "assistant", blocks)
        elif role == "tool":
            tool_call_id = message.get("tool_call_id")
            if not isinstance(tool_call_id, str):
                raise BadRequest("a tool message needs tool_call_id", param=f"{where}.tool_call_id")
            content = _openai_parts(message.get("content"), f"{where}.content")
            result: JSON = {"type": "tool_result", "tool_use_id": tool_call_id}
            if content:
                result["content"] = content
            _append(messages, "user", [result])
        else:
            raise BadRequest(f"message role {role!r} is not supported", param=f"{where}.role")
    for message in messages:
        # Anthropic wants tool_result blocks before any other block of the user turn.
        if message["role"] == "user":
            message["content"].sort(key=lambda block: block["type"] != "tool_result")
    return system, messages


def _convert_tools(tools: Any) -> list[JSON]:
    if not isinstance(tools, list):
        raise BadRequest("tools must be an array", param="tools")
    converted: list[JSON] = []
    for number, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest("only function tools with a name are supported", param=f"tools[{number}]")
        entry: JSON = {"name": function["name"]}
        if function.get("description"):
            entry["description"] = function["description"]
        entry["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
        converted.append(entry)
    return converted


def _convert_tool_choice(choice: Any, parallel: Any) -> JSON:
    if choice is None or choice == "auto":
        result: JSON = {"type": "auto"}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        result = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise BadRequest("tool_choice must be auto, none, required or a named function", param="tool_choice")
    if parallel is False:
        result["disable_parallel_tool_use"] = True
    return result


def openai_to_anthropic_request(body: JSON, model: str) -> JSON:
    """Translate an OpenAI chat completion request into an Anthropic ``POST /v1/messages`` body.

    Args:
        body: the caller's OpenAI-format request.
        model: the Anthropic model id to call (after alias resolution).

    Returns:
        The Anthropic request. OpenAI fields with no Anthropic counterpart are dropped.

    Raises:
        BadRequest: for messages, content parts, tools or tool call arguments Anthropic cannot take.
    """
    system, messages = _convert_messages(body.get("messages"))
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    request: JSON = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if system:
        request["system"] = "\n\n".join(system)
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            request[name] = body[name]
    stop = body.get("stop")
    if isinstance(stop, str):
        request["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        request["stop_sequences"] = list(stop)
    if body.get("stream"):
        request["stream"] = True
    if body.get("tools"):
        request["tools"] = _convert_tools(body["tools"])
        # Tools stay even for tool_choice "none": Anthropic rejects tool_use history without them.
        request["tool_choice"] = _convert_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if isinstance(body.get("user"), str) and body["user"]:
        request["metadata"] = {"user_id": body["user"]}
    return request


# --- Anthropic response -> OpenAI response ---------------------------------------------------------


def openai_usage(usage: JSON) -> JSON:
    """Anthropic counts cached prompt tokens apart from ``input_tokens``; OpenAI includes them."""
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    prompt = int(usage.get("input_tokens") or 0) + cache_read + cache_write
    completion = int(usage.get("output_tokens") or 0)
    result: JSON = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if cache_read:
        result["prompt_tokens_details"] = {"cached_tokens": cache_read}
    return result


def openai_tool_call(block: JSON) -> JSON:
    arguments = orjson.dumps(block.get("input") or {}).decode()
    return {"id": block.get("id"), "type": "function", "function": {"name": block.get("name"), "arguments": arguments}}


def anthropic_to_openai_response(data: JSON, model: str) -> JSON:
    """Translate an Anthropic ``message`` into an OpenAI ``chat.completion``.

    Thinking blocks are left out: OpenAI chat completions have no standard field for them.
    """
    texts: list[str] = []
    tool_calls: list[JSON] = []
    for block in data.get("content") or []:
        if block.get("type") == "text":
            texts.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            tool_calls.append(openai_tool_call(block))
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": data.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": _now(),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason_of(data.get("stop_reason")),
            }
        ],
        "usage": openai_usage(data.get("usage") or {}),
    }


class AnthropicToOpenAIStream:
    """Turns Anthropic stream events into OpenAI ``chat.completion.chunk`` dicts, one event at a time.

    Anthropic numbers content blocks (text and tool use together); OpenAI numbers tool calls only,
    so tool_use block indices are remapped to 0, 1, ...
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = _now()
        #: True once ``message_stop`` arrived: the upstream finished the message.
        self.finished = False
        self._tool_index: dict[int, int] = {}
        self._usage: JSON = {}

    def _chunk(self, delta: JSON, finish_reason: str | None = None) -> JSON:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    def feed(self, event: str, data: JSON) -> list[JSON]:
        """Translate one SSE event (its ``event:`` name and parsed ``data:``) into zero or more chunks.

        Raises:
            StreamBroken: for an ``error`` event.
        """
        kind = event or str(data.get("type") or "")
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = message.get("id") or self.id
            self._usage.update(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(int(data.get("index") or 0), data.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(int(data.get("index") or 0), data.get("delta") or {})
        if kind == "message_delta":
            self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            stop_reason = (data.get("delta") or {}).get("stop_reason")
            chunk = self._chunk({}, finish_reason_of(stop_reason))
            chunk["usage"] = openai_usage(self._usage)
            return [chunk]
        if kind == "message_stop":
            self.finished = True
        elif kind == "error":
            error = data.get("error") or {}
            raise StreamBroken(f"anthropic stream error ({error.get('type', 'error')}): {error.get('message', '')}")
        return []

    def _block_start(self, index: int, block: JSON) -> list[JSON]:
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if block.get("type") == "tool_use":
            number = self._tool_index[index] = len(self._tool_index)
            function = {"name": block.get("name"), "arguments": ""}
            call = {"index": number, "id": block.get("id"), "type": "function", "function": function}
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _block_delta(self, index: int, delta: JSON) -> list[JSON]:
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if delta.get("type") == "input_json_delta" and delta.get("partial_json") and index in self._tool_index:
            call = {"index": self._tool_index[index], "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        return []
