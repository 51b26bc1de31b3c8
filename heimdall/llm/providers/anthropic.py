"""The Anthropic Messages API (https://docs.anthropic.com/en/api/messages) behind the OpenAI-format seam.

Requests and responses are translated by ``anthropic_translate``; this module only does the HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from heimdall.errors import BadRequest, UpstreamError
from heimdall.llm.http1 import HTTP1Client
from heimdall.llm.providers.anthropic_translate import (
    AnthropicToOpenAIStream,
    anthropic_to_openai_response,
    openai_to_anthropic_request,
)
from heimdall.llm.providers.base import (
    TRANSPORT_ERRORS,
    StreamBroken,
    Target,
    error_from_response,
    open_response,
    post_json,
    raise_for_stream_status,
    read_sse_events,
    sse_frame,
    transport_error,
)

ANTHROPIC_VERSION = "2023-06-01"

# HTTP statuses Anthropic documents for its error types, for an ``error`` event that arrives before
# any frame was sent (so the attempt can still be retried like an HTTP error).
_ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class AnthropicAdapter:
    """``<base_url>/v1/messages`` with ``x-api-key`` and ``anthropic-version`` headers."""

    def url(self, target: Target) -> str:
        if not target.provider.base_url:
            raise BadRequest(
                f"provider {target.provider.name!r} has no base_url",
                status_code=500,
                error_type="configuration_error",
            )
        return f"{target.provider.base_url.rstrip('/')}/v1/messages"

    def headers(self, target: Target) -> dict[str, str]:
        return {
            "x-api-key": target.secret,
            "anthropic-version": ANTHROPIC_VERSION,
            "content-type": "application/json",
            # Last, so operators can pin another anthropic-version or add anthropic-beta.
            **target.provider.extra_headers,
        }

    async def chat(self, http: HTTP1Client, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        payload = openai_to_anthropic_request(body, target.model)
        payload.pop("stream", None)
        data = await post_json(http, target, self.url(target), self.headers(target), orjson.dumps(payload))
        if not isinstance(data, dict):
            raise error_from_response(target.provider.name, 502, b"upstream sent a non-object response")
        return anthropic_to_openai_response(data, target.model)

    async def stream_chat(self, http: HTTP1Client, target: Target, body: dict[str, Any]) -> AsyncIterator[bytes]:
        payload = {**openai_to_anthropic_request(body, target.model), "stream": True}
        name = target.provider.name
        response = await open_response(
            http, target, self.url(target), self.headers(target), orjson.dumps(payload), stream=True
        )
        try:
            await raise_for_stream_status(target, response)
            translator = AnthropicToOpenAIStream(target.model)
            sent_any = False
            try:
                async for event, data in read_sse_events(response):
                    parsed = _parse_event(name, data, sent_any)
                    if (event or parsed.get("type")) == "error" and not sent_any:
                        raise _error_event(name, parsed, data)
                    for chunk in translator.feed(event, parsed):
                        sent_any = True
                        yield sse_frame(chunk)
                    if translator.finished:
                        break
            except TRANSPORT_ERRORS as exc:
                if not sent_any:
                    raise transport_error(name, exc) from exc
                raise StreamBroken(f"{name} stream failed: {type(exc).__name__}") from exc
            if not translator.finished:
                if not sent_any:
                    raise error_from_response(name, 502, b"upstream closed the stream without data")
                raise StreamBroken(f"{name} closed the stream before message_stop")
        finally:
            response.release()

    async def embeddings(self, http: HTTP1Client, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        raise BadRequest("anthropic does not offer embeddings", status_code=400)


def _parse_event(provider: str, data: bytes, sent_any: bool) -> dict[str, Any]:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    if sent_any:
        raise StreamBroken(f"{provider} sent a stream event that is not a JSON object")
    raise error_from_response(provider, 502, b"upstream sent a stream event that is not a JSON object")


def _error_event(provider: str, parsed: dict[str, Any], data: bytes) -> UpstreamError:
    error = parsed.get("error")
    error_type = error.get("type") if isinstance(error, dict) else None
    return error_from_response(provider, _ERROR_STATUSES.get(str(error_type), 502), data)
