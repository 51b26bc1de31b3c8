"""OpenAI and every OpenAI-compatible API (vLLM, Ollama, Groq, …), and Azure OpenAI.

Requests are forwarded as the caller sent them, with only ``model`` replaced: no re-validation of
bodies the gateway does not need to understand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from heimdall.errors import BadRequest
from heimdall.llm.providers.base import (
    StreamBroken,
    Target,
    error_from_response,
    read_sse_data,
    timeout_for,
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

    async def _post_json(
        self, http: aiohttp.ClientSession, target: Target, operation: str, body: dict[str, Any]
    ) -> Any:
        try:
            async with http.post(
                self.url(target, operation),
                data=self.payload(target, body),
                headers=self.headers(target),
                timeout=timeout_for(target, stream=False),
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise transport_error(target.provider.name, exc) from exc
        if status != 200:
            raise error_from_response(target.provider.name, status, raw)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise error_from_response(target.provider.name, 502, b"upstream sent invalid JSON") from exc

    async def chat(self, http: aiohttp.ClientSession, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        data = await self._post_json(http, target, "chat/completions", body)
        if not isinstance(data, dict):
            raise error_from_response(target.provider.name, 502, b"upstream sent a non-object response")
        return data

    async def embeddings(self, http: aiohttp.ClientSession, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        data = await self._post_json(http, target, "embeddings", body)
        if not isinstance(data, dict):
            raise error_from_response(target.provider.name, 502, b"upstream sent a non-object response")
        return data

    async def stream_chat(
        self, http: aiohttp.ClientSession, target: Target, body: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        try:
            response = await http.post(
                self.url(target, "chat/completions"),
                data=self.payload(target, body),
                headers=self.headers(target),
                timeout=timeout_for(target, stream=True),
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise transport_error(target.provider.name, exc) from exc
        try:
            if response.status != 200:
                try:
                    raw = await response.read()
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    raise transport_error(target.provider.name, exc) from exc
                raise error_from_response(target.provider.name, response.status, raw)
            done = False
            sent_any = False
            try:
                async for data in read_sse_data(response):
                    if data == _DONE:
                        done = True
                        break
                    sent_any = True
                    yield b"data: " + data + b"\n\n"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if not sent_any:
                    raise transport_error(target.provider.name, exc) from exc
                raise StreamBroken(f"{target.provider.name} stream failed: {type(exc).__name__}") from exc
            if not done:
                if not sent_any:
                    raise error_from_response(target.provider.name, 502, b"upstream closed the stream without data")
                raise StreamBroken(f"{target.provider.name} closed the stream before it finished")
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
