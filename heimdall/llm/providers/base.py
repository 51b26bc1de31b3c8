"""The adapter seam between the gateway (which speaks OpenAI chat format) and an upstream API.

Adapters receive the caller's OpenAI-format request as a dict and return OpenAI-format results:
``chat`` a ``chat.completion`` dict, ``stream_chat`` SSE frames (``b"data: {...}\\n\\n"``, without
the final ``[DONE]``), ``embeddings`` an embeddings list dict. They raise ``UpstreamError`` for
anything that goes wrong before the first byte reaches the caller and ``StreamBroken`` after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from heimdall.errors import BadRequest, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from heimdall.llm.catalog import KeyRuntime, ProviderRuntime


class StreamBroken(Exception):
    """The upstream stream ended or failed after frames were already sent to the caller."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one attempt goes: a provider, one of its keys and the model id after alias resolution."""

    provider: ProviderRuntime
    key: KeyRuntime
    model: str

    @property
    def secret(self) -> str:
        if self.key.secret is None:
            raise BadRequest(
                f"key {self.key.id!r} of provider {self.provider.name!r} has no value "
                "(its environment variable is not set)",
                status_code=500,
                error_type="configuration_error",
            )
        return self.key.secret


class ProviderAdapter(Protocol):
    async def chat(self, http: aiohttp.ClientSession, target: Target, body: dict[str, Any]) -> dict[str, Any]: ...

    def stream_chat(
        self, http: aiohttp.ClientSession, target: Target, body: dict[str, Any]
    ) -> AsyncIterator[bytes]: ...

    async def embeddings(self, http: aiohttp.ClientSession, target: Target, body: dict[str, Any]) -> dict[str, Any]: ...


RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


def upstream_error_message(payload: bytes) -> str:
    """Pull a human message out of an upstream error body (OpenAI, Anthropic and Azure shapes)."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        text = payload.decode("utf-8", "replace").strip()
        return text[:500] or "no error body"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if isinstance(data.get("message"), str):
            return str(data["message"])
    return payload.decode("utf-8", "replace")[:500]


def error_from_response(provider: str, status: int, payload: bytes) -> UpstreamError:
    message = upstream_error_message(payload)
    return UpstreamError(
        f"{provider} returned HTTP {status}: {message}",
        status_code=status if 400 <= status < 600 else 502,
        retryable=status in RETRYABLE_STATUSES,
        extra_fields={"upstream_status": status},
    )


def transport_error(provider: str, exc: BaseException) -> UpstreamError:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeout(f"{provider} did not answer in time")
    return UpstreamUnavailable(f"{provider} could not be reached: {type(exc).__name__}: {exc}".rstrip(": "))


def timeout_for(target: Target, *, stream: bool) -> aiohttp.ClientTimeout:
    """Non-streaming: one total deadline. Streaming: a connect deadline and a per-read deadline."""
    seconds = target.provider.timeout
    if stream:
        return aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)
    return aiohttp.ClientTimeout(total=seconds)


async def read_sse_data(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Yield the payload of each ``data:`` line of an SSE response (events and comments skipped)."""
    async for raw in response.content:
        line = raw.rstrip(b"\r\n")
        if line.startswith(b"data:"):
            yield line[5:].lstrip()


async def read_sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, bytes]]:
    """Yield ``(event, data)`` pairs of an SSE response; ``event`` is "" when the frame names none."""
    event = ""
    data: list[bytes] = []
    async for raw in response.content:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                yield event, b"\n".join(data)
            event, data = "", []
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            data.append(line[5:].lstrip())
    if data:
        yield event, b"\n".join(data)


def sse_frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"
