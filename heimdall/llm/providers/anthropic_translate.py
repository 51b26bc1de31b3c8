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

from heimdall.errors import BadRequest, UpstreamError
from heimdall.llm.providers.base import StreamBroken

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "AnthropicToOpenAIStream",
    "OpenAIToAnthropicStream",
    "anthropic_error_body",
    "anthropic_to_openai_request",
    "anthropic_to_openai_response",
    "openai_to_anthropic_request",
    "openai_to_anthropic_response",
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

_STOP_REASONS: dict[str, str] = {
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


def _finish_reason(stop_reason: str | None) -> str:
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


def _openai_usage(usage: JSON) -> JSON:
    """Anthropic counts cached prompt tokens apart from ``input_tokens``; OpenAI includes them."""
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    prompt = int(usage.get("input_tokens") or 0) + cache_read + cache_write
    completion = int(usage.get("output_tokens") or 0)
    result: JSON = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if cache_read:
        result["prompt_tokens_details"] = {"cached_tokens": cache_read}
    return result


def _openai_tool_call(block: JSON) -> JSON:
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
            tool_calls.append(_openai_tool_call(block))
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": data.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": _now(),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(data.get("stop_reason"))}
        ],
        "usage": _openai_usage(data.get("usage") or {}),
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
            chunk = self._chunk({}, _finish_reason(stop_reason))
            chunk["usage"] = _openai_usage(self._usage)
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
            tool_calls.append(_openai_tool_call(block))
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
    """The inverse of ``_openai_usage``: cached prompt tokens move out of ``input_tokens``."""
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
    if isinstance(finish_reason, str) and finish_reason in _STOP_REASONS:
        return _STOP_REASONS[finish_reason]
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
        self._finish_reason: str | None = None
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
                self._finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> list[tuple[str, JSON]]:
        """Close the open block and end the message; call once after the last chunk."""
        events = self._start(None)
        events += self._close()
        usage = _anthropic_usage(self._usage)
        delta = {"stop_reason": _stop_reason(self._finish_reason, bool(self._tools)), "stop_sequence": None}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events
