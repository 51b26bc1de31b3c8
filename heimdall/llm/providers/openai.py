"""OpenAI and every OpenAI-compatible API (vLLM, Ollama, Groq, …), and Azure OpenAI.

Requests are forwarded as the caller sent them, with only ``model`` replaced: no re-validation of
bodies the gateway does not need to understand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from heimdall.errors import BadRequest
from heimdall.llm.http1 import HTTP1Client
from heimdall.llm.providers.base import (
    TRANSPORT_ERRORS,
    StreamBroken,
    Target,
    error_from_response,
    open_response,
    post_json,
    raise_for_stream_status,
    read_sse_batches,
    transport_error,
)

_JSON = "application/json"
_DONE = b"[DONE]"


class OpenAIAdapter:
    """``<base_url>/v1/...`` with ``Authorization: Bearer <key>``."""

    def url(self, target: Target, operation: str) -> str:
        return f"{target.provider.base_url}/v1/{operation}"

    def headers(self, target: Target) -> dict[str, str]:
        return {**target.provider.extra_headers, "Authorization": f"Bearer {target.secret}", "Content-Type": _JSON}

    def payload(self, target: Target, body: dict[str, Any]) -> bytes:
        return orjson.dumps({**body, "model": target.model})

    async def chat(self, http: HTTP1Client, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        data = await post_json(
            http, target, self.url(target, "chat/completions"), self.headers(target), self.payload(target, body)
        )
        if not isinstance(data, dict):
            raise error_from_response(target.provider.name, 502, b"upstream sent a non-object response")
        return data

    async def embeddings(self, http: HTTP1Client, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        data = await post_json(
            http, target, self.url(target, "embeddings"), self.headers(target), self.payload(target, body)
        )
        if not isinstance(data, dict):
            raise error_from_response(target.provider.name, 502, b"upstream sent a non-object response")
        return data

    async def stream_chat(self, http: HTTP1Client, target: Target, body: dict[str, Any]) -> AsyncIterator[bytes]:
        name = target.provider.name
        response = await open_response(
            http,
            target,
            self.url(target, "chat/completions"),
            self.headers(target),
            self.payload(target, body),
            stream=True,
        )
        try:
            await raise_for_stream_status(target, response)
            done = False
            sent_any = False
            try:
                async for batch in read_sse_batches(response):
                    frames = []
                    for data in batch:
                        if data == _DONE:
                            done = True
                            break
                        frames.append(b"data: " + data + b"\n\n")
                    if frames:
                        sent_any = True
                        yield frames[0] if len(frames) == 1 else b"".join(frames)
                    if done:
                        await response.finish()
                        break
            except TRANSPORT_ERRORS as exc:
                if not sent_any:
                    raise transport_error(name, exc) from exc
                raise StreamBroken(f"{name} stream failed: {type(exc).__name__}") from exc
            if not done:
                if not sent_any:
                    raise error_from_response(name, 502, b"upstream closed the stream without data")
                raise StreamBroken(f"{name} closed the stream before it finished")
        finally:
            response.release()


class AzureOpenAIAdapter(OpenAIAdapter):
    """``<endpoint>/openai/deployments/<deployment>/...?api-version=`` with an ``api-key`` header.

    The deployment is the model id after alias resolution: aliases map model names to deployments.
    """

    def url(self, target: Target, operation: str) -> str:
        endpoint = target.key.azure_endpoint
        if not endpoint:
            raise BadRequest(
                f"azure key {target.key.id!r} has no endpoint (azure_key_config.endpoint)",
                status_code=500,
                error_type="configuration_error",
            )
        version = target.key.azure_api_version or "2024-10-21"
        return f"{endpoint}/openai/deployments/{target.model}/{operation}?api-version={version}"

    def headers(self, target: Target) -> dict[str, str]:
        return {**target.provider.extra_headers, "api-key": target.secret, "Content-Type": _JSON}
