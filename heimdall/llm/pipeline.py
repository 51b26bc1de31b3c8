"""One inference request from caller to provider: authenticate, route, attempt with retries.

The front ends (OpenAI-format ``/v1/...`` and Anthropic-format ``/anthropic/v1/messages``) parse
the caller's format; this module only sees OpenAI-format dicts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from heimdall.crypto import SecretBox
from heimdall.errors import Forbidden, GatewayError, Unauthorized, UpstreamError
from heimdall.governance.virtual_keys import VirtualKeyRuntime, extract_virtual_key
from heimdall.llm.http1 import HTTP1Client
from heimdall.llm.providers.anthropic import AnthropicAdapter
from heimdall.llm.providers.base import ProviderAdapter, Target
from heimdall.llm.providers.openai import AzureOpenAIAdapter, OpenAIAdapter
from heimdall.llm.routing import Route, route
from heimdall.metrics import Metrics
from heimdall.state import Snapshot

T = TypeVar("T")

ADAPTERS: dict[str, ProviderAdapter] = {
    "openai": OpenAIAdapter(),
    "azure": AzureOpenAIAdapter(),
    "anthropic": AnthropicAdapter(),
}


@dataclass(slots=True)
class Caller:
    """Who is calling: the virtual key, if any (later also the end-user identity)."""

    vk: VirtualKeyRuntime | None


@dataclass(slots=True)
class Attempted:
    """What the pipeline knows about a request so far; read by the front end for extra_fields and metrics."""

    model_field: str
    route: Route | None = None
    target: Target | None = None
    #: Upstream attempts so far (retries included; across iterations in agent mode).
    attempts: int = 0

    @property
    def provider(self) -> str:
        return self.route.provider.name if self.route else "unknown"

    def extra_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"original_model_requested": self.model_field}
        if self.route is not None:
            fields["provider"] = self.route.provider.name
        fields["resolved_model_used"] = self.target.model if self.target else self.model_field
        return fields


def authenticate(snapshot: Snapshot, box: SecretBox, headers: dict[bytes, bytes]) -> Caller:
    """Find and check the caller's virtual key (inactive or unknown keys are refused, never ignored)."""
    value = extract_virtual_key(headers)
    if value is None:
        if snapshot.client.enforce_auth_on_inference:
            raise Unauthorized(
                "a virtual key is required: send it as x-bf-vk, Authorization: Bearer, or x-api-key",
                code="virtual_key_required",
            )
        return Caller(vk=None)
    vk = snapshot.virtual_keys_by_hash.get(box.lookup_hash(value))
    if vk is None:
        raise Unauthorized("invalid virtual key", code="invalid_virtual_key")
    if not vk.is_active:
        raise Forbidden(f"virtual key {vk.name!r} is inactive", code="virtual_key_inactive")
    return Caller(vk=vk)


class InferencePipeline:
    def __init__(self, http: HTTP1Client, metrics: Metrics) -> None:
        self.http = http
        self.metrics = metrics

    async def _attempts(
        self,
        snapshot: Snapshot,
        caller: Caller,
        state: Attempted,
        attempt: Callable[[ProviderAdapter, Target], Awaitable[T]],
    ) -> T:
        """Try the route's keys in weighted order; retry 429/5xx/transport errors with backoff."""
        chosen = route(state.model_field, snapshot.providers, caller.vk)
        state.route = chosen
        provider = chosen.provider
        adapter = ADAPTERS[provider.kind]
        tries = 1 + provider.max_retries
        for number in range(tries):
            key = chosen.keys[number % len(chosen.keys)]
            target = Target(provider=provider, key=key, model=key.resolve_alias(chosen.model))
            state.target = target
            state.attempts += 1
            try:
                return await attempt(adapter, target)
            except UpstreamError as exc:
                self.metrics.upstream_errors.labels(provider.name, chosen.model, exc.error_type).inc()
                if not exc.retryable or number + 1 >= tries:
                    raise
                self.metrics.retries.labels(provider.name).inc()
                delay = min(provider.backoff_initial * (2**number), provider.backoff_max)
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
        raise AssertionError("unreachable")  # pragma: no cover

    async def chat(self, snapshot: Snapshot, caller: Caller, state: Attempted, body: dict[str, Any]) -> dict[str, Any]:
        async def call(adapter: ProviderAdapter, target: Target) -> dict[str, Any]:
            return await adapter.chat(self.http, target, body)

        return await self._attempts(snapshot, caller, state, call)

    async def embeddings(
        self, snapshot: Snapshot, caller: Caller, state: Attempted, body: dict[str, Any]
    ) -> dict[str, Any]:
        async def call(adapter: ProviderAdapter, target: Target) -> dict[str, Any]:
            return await adapter.embeddings(self.http, target, body)

        return await self._attempts(snapshot, caller, state, call)

    async def open_stream(
        self, snapshot: Snapshot, caller: Caller, state: Attempted, body: dict[str, Any]
    ) -> tuple[bytes, AsyncIterator[bytes]]:
        """Start a stream and wait for its first frame, so failures before it can still be retried."""

        async def call(adapter: ProviderAdapter, target: Target) -> tuple[bytes, AsyncIterator[bytes]]:
            frames = adapter.stream_chat(self.http, target, body)
            try:
                first = await anext(frames)
            except StopAsyncIteration:
                raise UpstreamError("upstream sent an empty stream", status_code=502, retryable=True) from None
            except BaseException:
                await frames.aclose()  # type: ignore[attr-defined]
                raise
            return first, frames

        return await self._attempts(snapshot, caller, state, call)


def attach_model_fields(error: GatewayError, state: Attempted | None) -> GatewayError:
    if state is not None:
        for name, value in state.extra_fields().items():
            error.extra_fields.setdefault(name, value)
    return error
