"""OpenAI-format inference endpoints as raw ASGI callables (the hot path: no framework per request).

``/v1/chat/completions``, ``/v1/embeddings`` and ``/v1/models``, also reachable under ``/openai``.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from heimdall.asgi import (
    JSON_HEADERS,
    SSE_HEADERS,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    header_map,
    read_body,
    send_bytes,
    send_error,
    until_disconnect,
)
from heimdall.errors import BadRequest, GatewayError
from heimdall.gateway import Gateway
from heimdall.llm.exchange import Exchange
from heimdall.llm.pipeline import Attempted, Caller, attach_model_fields, authenticate
from heimdall.llm.providers.base import StreamBroken, split_frames
from heimdall.mcp.llm_bridge import apply_plan, plan_for

_FINAL_FRAME = re.compile(rb'"finish_reason"\s*:\s*"|"usage"\s*:\s*\{')
_USER_ID_HEADER = b"x-bf-user-id"


class MethodNotAllowed(GatewayError):
    status_code = 405
    error_type = "method_not_allowed"


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise BadRequest("request body is empty; send a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def model_of(data: dict[str, Any]) -> str:
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("model is required: send it as provider/model or as an alias", param="model")
    return model


class OpenAIEndpoints:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def _record(self, endpoint: str, exchange: Exchange) -> None:
        state = exchange.state
        provider = state.provider if state else "unknown"
        model = state.route.model if state and state.route else "unknown"
        seconds = exchange.finished - exchange.started
        self.gateway.metrics.observe_request(endpoint, provider, model, exchange.status, seconds)
        self.gateway.request_log.record(exchange)

    def _count_tokens(self, state: Attempted, usage: Any) -> None:
        if isinstance(usage, dict) and state.route is not None:
            self.gateway.metrics.count_tokens(state.provider, state.route.model, usage)

    async def _read(
        self, scope: Scope, receive: Receive, headers: dict[bytes, bytes], exchange: Exchange
    ) -> tuple[dict[str, Any], Attempted]:
        if scope["method"] != "POST":
            raise MethodNotAllowed(f"{scope['method']} is not allowed here; use POST")
        body = await read_body(receive, headers, self.gateway.body_limit())
        if exchange.capture:
            exchange.capture_request(body)
        data = parse_json_object(body)
        state = exchange.state = Attempted(model_field=model_of(data))
        return data, state

    def _caller(self, headers: dict[bytes, bytes], exchange: Exchange) -> Caller:
        caller = authenticate(self.gateway.snapshot, self.gateway.box, headers)
        exchange.vk = caller.vk
        exchange.user_header = headers.get(_USER_ID_HEADER)
        return caller

    async def _serve(
        self,
        endpoint: str,
        scope: Scope,
        send: Send,
        handle: Callable[[Exchange], Awaitable[None]],
        render_error: Callable[[GatewayError], bytes] | None = None,
    ) -> None:
        """Run one inference exchange: errors become envelopes, and every outcome is counted and logged."""
        exchange = Exchange(scope["path"], time.perf_counter(), capture=self.gateway.request_log.capture_bodies)
        try:
            await handle(exchange)
        except GatewayError as exc:
            exchange.status = exc.status_code
            exchange.error = exc.message
            exchange.error_type = exc.error_type
            error = attach_model_fields(exc, exchange.state)
            if render_error is None:
                await send_error(send, error)
            else:
                await send_bytes(send, error.status_code, render_error(error), JSON_HEADERS)
        except ClientDisconnected:
            exchange.status = 499
        finally:
            exchange.finished = time.perf_counter()
            self._record(endpoint, exchange)

    async def chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._serve("chat", scope, send, lambda exchange: self._chat(scope, receive, send, exchange))

    async def _chat(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        headers = header_map(scope)
        data, state = await self._read(scope, receive, headers, exchange)
        caller = self._caller(headers, exchange)
        pipeline = self.gateway.pipeline
        snapshot = self.gateway.snapshot
        plan = plan_for(self.gateway, caller, headers) if self.gateway.mcp is not None else None
        if plan is not None:
            apply_plan(data, plan)
        exchange.note_request(data)
        agent = self.gateway.mcp.agent if plan is not None and self.gateway.mcp and plan.agent_mode else None
        if data.get("stream") is True:
            if agent is not None and plan is not None:
                frames = agent.stream(snapshot, caller, state, data, plan.filters, plan.caller)
                first = await anext(frames, b"")
            else:
                first, frames = await pipeline.open_stream(snapshot, caller, state, data)
            try:
                if await until_disconnect(receive, self._relay_stream(send, exchange, state, first, frames)):
                    exchange.status = 499
            finally:
                await frames.aclose()  # type: ignore[attr-defined]
        else:
            if agent is not None and plan is not None:
                result = await agent.complete(snapshot, caller, state, data, plan.filters, plan.caller)
            else:
                result = await pipeline.chat(snapshot, caller, state, data)
            result["extra_fields"] = {**state.extra_fields(), **result.get("extra_fields", {})}
            await self._send_result(send, exchange, state, result)

    async def _send_result(self, send: Send, exchange: Exchange, state: Attempted, result: dict[str, Any]) -> None:
        usage = result.get("usage")
        self._count_tokens(state, usage)
        exchange.note_result(result, usage)
        payload = orjson.dumps(result)
        if exchange.capture:
            exchange.capture_response(payload)
        await send_bytes(send, 200, payload)

    async def _relay_stream(
        self, send: Send, exchange: Exchange, state: Attempted, first: bytes, frames: AsyncIterator[bytes]
    ) -> None:
        extra = state.extra_fields()
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        exchange.first_byte = time.perf_counter()  # the first frame is already here and goes out next
        try:
            frame: bytes | None = first
            while frame is not None:
                if _FINAL_FRAME.search(frame):
                    frame = self._with_extra_fields(frame, extra, state, exchange)
                if exchange.capture:
                    exchange.capture_response(frame)
                await send({"type": "http.response.body", "body": frame, "more_body": True})
                frame = await anext(frames, None)
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        except (StreamBroken, GatewayError) as exc:
            model = state.route.model if state.route else "unknown"
            self.gateway.metrics.upstream_errors.labels(state.provider, model, "stream_broken").inc()
            if isinstance(exc, GatewayError):
                error = attach_model_fields(exc, state)
            else:
                error = GatewayError(str(exc), status_code=502, error_type="upstream_stream_broken", extra_fields=extra)
                error.from_gateway = False
            exchange.error, exchange.error_type = error.message, error.error_type
            await send({"type": "http.response.body", "body": b"data: " + error.body() + b"\n\n", "more_body": False})

    def _with_extra_fields(self, blob: bytes, extra: dict[str, Any], state: Attempted, exchange: Exchange) -> bytes:
        """Add ``extra_fields`` to the final frames (finish_reason or usage) of a blob of frames."""
        out: list[bytes] = []
        for payload in split_frames(blob):
            if _FINAL_FRAME.search(payload):
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    chunk = None
                if isinstance(chunk, dict):
                    chunk["extra_fields"] = {**extra, **chunk.get("extra_fields", {})}
                    self._count_tokens(state, chunk.get("usage"))
                    exchange.note_final_chunk(chunk)
                    payload = orjson.dumps(chunk)
            out.append(b"data: " + payload + b"\n\n")
        return b"".join(out)

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._serve("embeddings", scope, send, lambda exchange: self._embeddings(scope, receive, send, exchange))

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        headers = header_map(scope)
        data, state = await self._read(scope, receive, headers, exchange)
        caller = self._caller(headers, exchange)
        if "input" not in data:
            raise BadRequest("input is required", param="input")
        result = await self.gateway.pipeline.embeddings(self.gateway.snapshot, caller, state, data)
        result["extra_fields"] = {**state.extra_fields(), **result.get("extra_fields", {})}
        await self._send_result(send, exchange, state, result)

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["method"] != "GET":
                raise MethodNotAllowed(f"{scope['method']} is not allowed here; use GET")
            snapshot = self.gateway.snapshot
            caller = authenticate(snapshot, self.gateway.box, header_map(scope))
            models: list[dict[str, Any]] = []
            for provider in snapshot.providers.values():
                for name in provider.explicit_models():
                    if caller.vk is not None and not caller.vk.allows_model(provider.name, name):
                        continue
                    is_alias = any(name in key.aliases for key in provider.keys)
                    entry: dict[str, Any] = {
                        "id": f"{provider.name}/{name}",
                        "object": "model",
                        "created": 0,
                        "owned_by": provider.name,
                    }
                    if is_alias:
                        entry["alias_for"] = sorted({key.aliases[name] for key in provider.keys if name in key.aliases})
                    models.append(entry)
            await send_bytes(send, 200, orjson.dumps({"object": "list", "data": models}), JSON_HEADERS)
        except GatewayError as exc:
            await send_error(send, exc)
