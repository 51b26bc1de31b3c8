"""Fixed request and response bodies shared by the upstream, wrk and the TTFB client."""

from __future__ import annotations

import json
from typing import Any

MODEL = "gpt-4o-mini"
#: Provider used for non-streaming requests; its base URL serves JSON.
JSON_PROVIDER = "openai"
#: OpenAI-compatible provider used for streaming requests; its base URL serves SSE.
STREAM_PROVIDER = "vllm"
CHAT_PATH = "/v1/chat/completions"
#: Prefix of the nginx location answering with a fixed SSE body.
STREAM_PREFIX = "/stream"
CREATED = 1_700_000_000


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def request_body(stream: bool) -> bytes:
    """The chat request sent by wrk and the TTFB client (to the gateway and to nginx alike)."""
    provider = STREAM_PROVIDER if stream else JSON_PROVIDER
    body: dict[str, Any] = {
        "model": f"{provider}/{MODEL}",
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Say hello to the benchmark."},
        ],
        "max_tokens": 16,
        "temperature": 0,
    }
    if stream:
        body["stream"] = True
    return _dumps(body).encode()


def completion_body() -> str:
    """A fixed OpenAI ``chat.completion`` response."""
    return _dumps(
        {
            "id": "chatcmpl-bench0001",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello, benchmark! Nice to meet you."},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 24, "completion_tokens": 9, "total_tokens": 33},
        }
    )


def _chunk(delta: dict[str, Any], finish_reason: str | None = None, usage: dict[str, int] | None = None) -> str:
    chunk: dict[str, Any] = {
        "id": "chatcmpl-bench0001",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return _dumps(chunk)


def stream_body() -> str:
    """A fixed SSE body: role frame, content frames, finish frame with usage, ``[DONE]``."""
    frames = [_chunk({"role": "assistant", "content": ""})]
    frames += [_chunk({"content": piece}) for piece in ("Hello", ", bench", "mark!", " Nice", " to meet you.")]
    frames.append(_chunk({}, "stop", {"prompt_tokens": 24, "completion_tokens": 9, "total_tokens": 33}))
    frames.append("[DONE]")
    return "".join(f"data: {frame}\n\n" for frame in frames)
