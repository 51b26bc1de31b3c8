"""The adapter seam between the gateway (which speaks OpenAI chat format) and an upstream API.

Adapters receive the caller's OpenAI-format request as a dict and return OpenAI-format results:
``chat`` a ``chat.completion`` dict, ``stream_chat`` SSE frames (``b"data: {...}\\n\\n"``, without
the final ``[DONE]``; several frames may come in one blob), ``embeddings`` an embeddings list dict.
They raise ``UpstreamError`` for anything that goes wrong before the first byte reaches the caller
and ``StreamBroken`` after.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from heimdall.errors import BadRequest, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from heimdall.llm.catalog import KeyRuntime, ProviderRuntime
from heimdall.llm.http1 import HTTP1Client, UpstreamConnectionError, UpstreamResponse

#: Failures of the connection itself (as opposed to an HTTP error status).
TRANSPORT_ERRORS = (UpstreamConnectionError, TimeoutError, OSError, ssl.SSLError)


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
    async def chat(self, http: HTTP1Client, target: Target, body: dict[str, Any]) -> dict[str, Any]: ...

    def stream_chat(self, http: HTTP1Client, target: Target, body: dict[str, Any]) -> AsyncIterator[bytes]: ...

    async def embeddings(self, http: HTTP1Client, target: Target, body: dict[str, Any]) -> dict[str, Any]: ...


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
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"{provider} did not answer in time")
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return UpstreamUnavailable(f"{provider} could not be reached: {detail}")


async def open_response(
    http: HTTP1Client, target: Target, url: str, headers: dict[str, str], payload: bytes, *, stream: bool
) -> UpstreamResponse:
    """POST and wait for the response headers.

    Non-streaming calls get one deadline for the whole exchange; streams get a deadline per read,
    so a long but lively stream is never cut off.
    """
    seconds = target.provider.timeout
    try:
        if stream:
            return await http.request("POST", url, headers, payload, read_timeout=seconds)
        return await http.request("POST", url, headers, payload, timeout=seconds)
    except TRANSPORT_ERRORS as exc:
        raise transport_error(target.provider.name, exc) from exc


async def post_json(http: HTTP1Client, target: Target, url: str, headers: dict[str, str], payload: bytes) -> Any:
    """POST, read the whole body, raise ``UpstreamError`` for a non-200 status, return parsed JSON."""
    name = target.provider.name
    response = await open_response(http, target, url, headers, payload, stream=False)
    try:
        raw = await response.read()
    except TRANSPORT_ERRORS as exc:
        raise transport_error(name, exc) from exc
    finally:
        response.release()
    if response.status != 200:
        raise error_from_response(name, response.status, raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise error_from_response(name, 502, b"upstream sent invalid JSON") from exc


async def raise_for_stream_status(target: Target, response: UpstreamResponse) -> None:
    if response.status == 200:
        return
    try:
        raw = await response.read()
    except TRANSPORT_ERRORS as exc:
        raise transport_error(target.provider.name, exc) from exc
    raise error_from_response(target.provider.name, response.status, raw)


async def read_sse_batches(response: UpstreamResponse) -> AsyncIterator[list[bytes]]:
    """Yield the ``data:`` payloads of an SSE response, batched by what arrived in one read.

    Batching keeps a stream's cost per network read rather than per event: frames that arrive
    together are relayed to the caller in one write.
    """
    pending = b""
    async for chunk in response.chunks():
        data = pending + chunk if pending else chunk
        lines = data.split(b"\n")
        pending = lines.pop()
        batch = [line[5:].strip() for line in lines if line.startswith(b"data:")]
        if batch:
            yield batch
    if pending.startswith(b"data:"):
        yield [pending[5:].strip()]


def split_frames(blob: bytes) -> list[bytes]:
    """The JSON payloads of a blob of ``data: ...\n\n`` frames (as adapters yield them)."""
    return [part[5:].strip() for part in blob.split(b"\n\n") if part.startswith(b"data:")]


async def read_sse_data(response: UpstreamResponse) -> AsyncIterator[bytes]:
    """Yield the payload of each ``data:`` line of an SSE response (events and comments skipped)."""
    async for line in response.lines():
        if line.startswith(b"data:"):
            yield line[5:].lstrip()


async def read_sse_events(response: UpstreamResponse) -> AsyncIterator[tuple[str, bytes]]:
    """Yield ``(event, data)`` pairs of an SSE response; ``event`` is "" when the frame names none."""
    event = ""
    data: list[bytes] = []
    async for line in response.lines():
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
