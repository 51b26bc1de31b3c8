"""``POST /anthropic/v1/messages``: the Anthropic Messages API in front of any provider.

An Anthropic-format caller (the ``anthropic`` SDK with ``base_url=<gateway>/anthropic``) is
translated to the gateway's OpenAI form, routed like any other request, and answered in the
Anthropic format, streaming included. Errors carry both the Anthropic ``type: "error"`` marker and
the gateway envelope, so the SDK and envelope readers each find what they expect.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from heimdall.asgi import (
    SSE_HEADERS,
    Receive,
    Scope,
    Send,
    header_map,
    send_bytes,
    until_disconnect,
)
from heimdall.errors import GatewayError
from heimdall.llm.endpoints import OpenAIEndpoints
from heimdall.llm.exchange import Exchange
from heimdall.llm.pipeline import Attempted
from heimdall.llm.providers.anthropic_reverse import (
    OpenAIToAnthropicStream,
    anthropic_to_openai_request,
    openai_to_anthropic_response,
)
from heimdall.llm.providers.base import StreamBroken, split_frames

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_error(error: GatewayError) -> bytes:
    body = error.envelope()
    body["type"] = "error"
    body["error"]["type"] = _ERROR_TYPES.get(error.status_code, "api_error")
    return orjson.dumps(body)


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class AnthropicEndpoints(OpenAIEndpoints):
    async def messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._serve(
            "messages", scope, send, lambda exchange: self._messages(scope, receive, send, exchange), anthropic_error
        )

    async def _messages(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        headers = header_map(scope)
        data, state = await self._read(scope, receive, headers, exchange)
        caller = self._caller(headers, exchange)
        body = anthropic_to_openai_request(data)
        exchange.note_request(body)
        pipeline = self.gateway.pipeline
        if body.get("stream") is True:
            body["stream_options"] = {"include_usage": True}
            first, frames = await pipeline.open_stream(self.gateway.snapshot, caller, state, body)
            try:
                if await until_disconnect(receive, self._relay(send, exchange, state, first, frames)):
                    exchange.status = 499
            finally:
                await frames.aclose()  # type: ignore[attr-defined]
        else:
            result = await pipeline.chat(self.gateway.snapshot, caller, state, body)
            usage = result.get("usage")
            self._count_tokens(state, usage)
            exchange.note_result(result, usage)
            message = openai_to_anthropic_response(result, state.model_field)
            message["extra_fields"] = state.extra_fields()
            payload = orjson.dumps(message)
            if exchange.capture:
                exchange.capture_response(payload)
            await send_bytes(send, 200, payload)

    async def _relay(
        self, send: Send, exchange: Exchange, state: Attempted, first: bytes, frames: AsyncIterator[bytes]
    ) -> None:
        translator = OpenAIToAnthropicStream(state.model_field)
        extra = state.extra_fields()
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        exchange.first_byte = time.perf_counter()  # the first frame is already here and goes out next
        try:
            frame: bytes | None = first
            while frame is not None:
                events: list[bytes] = []
                for payload in split_frames(frame):
                    chunk = orjson.loads(payload)
                    usage = chunk.get("usage")
                    if usage:
                        self._count_tokens(state, usage)
                        exchange.usage = usage
                    events.extend(sse_event(name, event) for name, event in translator.feed(chunk))
                out = b"".join(events)
                if out:
                    if exchange.capture:
                        exchange.capture_response(out)
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                frame = await anext(frames, None)
            closing = []
            for name, event in translator.finish():
                if name == "message_delta":
                    event = {**event, "extra_fields": extra}
                closing.append(sse_event(name, event))
            exchange.finish_reason = translator.finish_reason_of
            await send({"type": "http.response.body", "body": b"".join(closing), "more_body": False})
        except (StreamBroken, GatewayError, orjson.JSONDecodeError) as exc:
            message = exc.message if isinstance(exc, GatewayError) else str(exc)
            exchange.error = message
            exchange.error_type = exc.error_type if isinstance(exc, GatewayError) else "upstream_stream_broken"
            error = {"type": "error", "error": {"type": "api_error", "message": message}, "extra_fields": extra}
            await send({"type": "http.response.body", "body": sse_event("error", error), "more_body": False})
