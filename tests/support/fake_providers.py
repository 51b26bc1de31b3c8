"""Fake upstream LLM providers that speak the real OpenAI, Anthropic and Azure OpenAI wire formats.

One :class:`FakeProvider` serves all three APIs from a single Starlette app (serve it with
``tests.support.servers.serve_in_thread``):

* OpenAI: ``POST /v1/chat/completions`` (JSON and SSE), ``POST /v1/embeddings``, ``GET /v1/models[/{id}]``.
* Anthropic: ``POST /v1/messages`` (JSON and SSE with the real event names), ``GET /v1/models`` when the request
  carries ``anthropic-version``. The key is read from ``x-api-key`` or, as anthropic-python 2.x sends it, from
  ``Authorization: Bearer``; set ``anthropic_require_x_api_key`` to accept only ``x-api-key``.
* Azure OpenAI: ``POST /openai/deployments/{deployment}/chat/completions`` and ``.../embeddings``.

By default every chat call answers ``"echo: <last user message text>"`` with ``model`` set to the requested model
(for Azure: the deployment's underlying model). Usage is deterministic: tokens are whitespace-separated words.

Tests change that by queueing :class:`Behaviour` objects (thread-safe)::

    fake.script("openai.chat", [fail(429), reply("hello")])    # 429 first, then "hello"
    fake.script("anthropic", slow(2.0))                         # any Anthropic endpoint, once
    fake.script("model:gpt-4o", drop_stream(after=3))           # requests for model/deployment "gpt-4o"
    fake.always("azure", fail(500))                             # sticky until fake.reset()

Targets are ``"*"``, a kind or kind prefix (``openai``, ``openai.chat``, ``openai.embeddings``, ``openai.models``,
``anthropic``, ``anthropic.messages``, ``anthropic.models``, ``azure``, ``azure.chat``, ``azure.embeddings``), a path
prefix starting with ``/``, or ``model:<name>``. Queues are consulted in the order they were first scripted, then
the sticky behaviours, then directives in the model name, then the default echo.

Model-name directives (for gateways that cannot reach the Python object) are ``;``-separated ``key=value`` pairs
after the model name: ``gpt-4o;status=429``, ``claude;delay=0.5``, ``gpt-4o;drop=3``, ``gpt-4o;tool=get_weather``,
``gpt-4o;text=hi``, ``gpt-4o;fail_after=2``, ``gpt-4o;chunk_delay=0.1``. The reply's ``model`` is still the full
requested string.

Every request (including rejected ones) is recorded as a :class:`RecordedRequest`; read them with
``fake.requests``, ``fake.find(target)``, ``fake.last(target)``, ``fake.count(target)``; forget them with
``fake.clear()`` (``fake.reset()`` also drops scripted behaviours).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import logging
import math
import re
import struct
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "Behaviour",
    "DroppedConnection",
    "FakeProvider",
    "RecordedRequest",
    "ToolCall",
    "create_fake_provider_app",
    "drop_stream",
    "fail",
    "reply",
    "slow",
    "stream_error",
    "tool_call",
]

Flavor = Literal["openai", "azure", "anthropic"]
KeyCheck = Collection[str] | Callable[[str], bool] | None

DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "claude-sonnet-4-6", "claude-haiku-4-5")


# -- behaviours --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the fake model should make; ``arguments`` may be a mapping or a raw JSON string."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), separators=(",", ":"))

    def arguments_object(self) -> Any:
        return json.loads(self.arguments) if isinstance(self.arguments, str) else dict(self.arguments)


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the fake answers one request. Fields combine, e.g. ``Behaviour(delay=1, status=500)``."""

    status: int | None = None  # answer with this HTTP status and a provider-shaped error body
    message: str | None = None  # error message (default depends on status)
    error_type: str | None = None  # OpenAI ``error.type`` / Anthropic ``error.type``
    error_code: str | None = None  # OpenAI / Azure ``error.code``
    headers: Mapping[str, str] = field(default_factory=dict)  # extra response headers (e.g. retry-after)
    delay: float = 0.0  # seconds to wait before answering (stops early if the client goes away)
    text: str | None = None  # reply text; None = echo (or no text when tool_calls are given)
    tool_calls: tuple[ToolCall, ...] = ()
    drop_after: int | None = None  # streaming: send this many SSE frames, then drop the connection
    fail_after: int | None = None  # streaming: send this many SSE frames, then an in-band error event
    chunk_delay: float = 0.0  # streaming: pause between frames
    model: str | None = None  # override the ``model`` reported in the response
    finish_reason: str | None = None  # raw finish_reason / stop_reason override


def fail(
    status: int,
    message: str | None = None,
    *,
    type: str | None = None,  # mirrors the wire field name
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
) -> Behaviour:
    """Answer with HTTP ``status`` and a provider-shaped error body."""
    return Behaviour(
        status=status, message=message, error_type=type, error_code=code, headers=dict(headers or {}), delay=delay
    )


def slow(seconds: float, then: Behaviour | None = None) -> Behaviour:
    """Wait ``seconds`` before answering (with ``then``, default: the normal echo reply)."""
    return replace(then or Behaviour(), delay=seconds)


def reply(text: str, **fields: Any) -> Behaviour:
    """Answer with ``text`` (extra :class:`Behaviour` fields allowed, e.g. ``chunk_delay``)."""
    return Behaviour(text=text, **fields)


def tool_call(
    name: str,
    arguments: Mapping[str, Any] | str | None = None,
    *,
    id: str | None = None,  # mirrors the wire field name
    text: str | None = None,
    more: Iterable[ToolCall] = (),
) -> Behaviour:
    """Answer with a tool call (OpenAI ``tool_calls`` / Anthropic ``tool_use``), optionally after some text."""
    first = ToolCall(name, {} if arguments is None else arguments, id)
    return Behaviour(text=text, tool_calls=(first, *more))


def drop_stream(after: int, then: Behaviour | None = None) -> Behaviour:
    """Streaming: send ``after`` SSE frames, then close the TCP connection without finishing the response."""
    return replace(then or Behaviour(), drop_after=after)


def stream_error(after: int, message: str | None = None, *, type: str | None = None) -> Behaviour:
    """Streaming: send ``after`` SSE frames, then a provider-shaped in-band error event, then end the stream."""
    return Behaviour(fail_after=after, message=message, error_type=type)


class DroppedConnection(Exception):
    """Raised inside a streaming response to make uvicorn close the connection mid-body."""


class _HideDroppedConnection(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


_log_filter = _HideDroppedConnection()
logging.getLogger("uvicorn.error").addFilter(_log_filter)


# -- recording ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake received. Header names are lower-cased; ``body`` is the parsed JSON (or None)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes
    kind: str
    time: float

    @property
    def model(self) -> str | None:
        """Requested model: the body's ``model``, or the Azure deployment name."""
        if isinstance(self.body, dict) and isinstance(self.body.get("model"), str):
            return str(self.body["model"])
        match = re.match(r"^/openai/deployments/([^/]+)/", self.path)
        return match.group(1) if match else None


def _target_matches(target: str, rec: RecordedRequest) -> bool:
    if target in ("", "*"):
        return True
    if target.startswith("/"):
        return rec.path.startswith(target)
    if target.startswith("model:"):
        return rec.model == target.removeprefix("model:")
    return rec.kind == target or rec.kind.startswith(target + ".")


# -- helpers -----------------------------------------------------------------------------------------------------


def _words(text: str) -> int:
    return len(text.split())


def _pieces(text: str) -> list[str]:
    """Split text into word-sized stream deltas that concatenate back to ``text``."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def _split(text: str, parts: int = 3) -> list[str]:
    """Split ``text`` into (up to) ``parts`` non-empty consecutive slices."""
    if not text:
        return [""]
    size = max(1, math.ceil(len(text) / parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _content_text(content: Any) -> str:
    """Text of an OpenAI/Anthropic ``content`` (string or list of parts/blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") == "tool_result":
                    texts.append(_content_text(part.get("content")))
        return " ".join(t for t in texts if t)
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _prompt_tokens(messages: list[Any], system: Any = None) -> int:
    total = _words(_content_text(system))
    for message in messages:
        if isinstance(message, dict):
            total += _words(_content_text(message.get("content")))
    return max(total, 1)


def _vector(seed: str, dims: int) -> list[float]:
    """Deterministic unit vector (float32-representable values) for ``seed``."""
    raw = [
        int.from_bytes(hashlib.sha256(f"{seed}\x00{i}".encode()).digest()[:4], "big") / 2**31 - 1.0 for i in range(dims)
    ]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [struct.unpack("<f", struct.pack("<f", x / norm))[0] for x in raw]


def _sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


def _check_key(key: str | None, accepted: KeyCheck, default: Callable[[str], bool]) -> bool:
    if not key:
        return False
    if accepted is None:
        return default(key)
    if callable(accepted):
        return accepted(key)
    return key in accepted


_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 1s."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}

_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}

_AZURE_CODES = {401: "401", 404: "DeploymentNotFound", 429: "429", 500: "InternalServerError"}

_SAFE_FILTER = {name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual", "violence")}


# -- the fake ------------------------------------------------------------------------------------------------------


class FakeProvider:
    """State (recorded requests, scripted behaviours, accepted keys) plus the Starlette ``app`` serving it.

    Key checks (``openai_keys``, ``anthropic_keys``, ``azure_keys``) accept a collection of keys, a predicate, or
    None for the default (OpenAI/Anthropic: anything starting with ``sk-``; Azure: any non-empty key).
    ``azure_deployments`` maps deployment name to underlying model; None accepts any deployment (model = name).
    These attributes may be reassigned by tests at any time.
    """

    def __init__(
        self,
        *,
        openai_keys: KeyCheck = None,
        anthropic_keys: KeyCheck = None,
        azure_keys: KeyCheck = None,
        azure_deployments: Mapping[str, str] | None = None,
        models: Iterable[str] = DEFAULT_MODELS,
        embedding_dimensions: int = 16,
        anthropic_require_x_api_key: bool = False,
    ) -> None:
        self.openai_keys = openai_keys
        self.anthropic_keys = anthropic_keys
        self.azure_keys = azure_keys
        self.azure_deployments = dict(azure_deployments) if azure_deployments is not None else None
        self.models = list(models)
        self.embedding_dimensions = embedding_dimensions
        self.anthropic_require_x_api_key = anthropic_require_x_api_key
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._queues: dict[str, deque[Behaviour]] = {}
        self._sticky: dict[str, Behaviour] = {}
        self._ids = itertools.count(1)
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai_chat, methods=["POST"]),
                Route("/v1/embeddings", self._openai_embeddings, methods=["POST"]),
                Route("/v1/models", self._list_models, methods=["GET"]),
                Route("/v1/models/{model:path}", self._get_model, methods=["GET"]),
                Route("/v1/messages", self._anthropic_messages, methods=["POST"]),
                Route("/openai/deployments/{deployment}/chat/completions", self._azure_chat, methods=["POST"]),
                Route("/openai/deployments/{deployment}/embeddings", self._azure_embeddings, methods=["POST"]),
                Route("/{path:path}", self._not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            ]
        )

    # -- scripting API ---------------------------------------------------------------------------------------------

    def script(self, target: str, behaviours: Behaviour | Iterable[Behaviour]) -> None:
        """Queue behaviours for requests matching ``target``; each is used once, in order."""
        items = [behaviours] if isinstance(behaviours, Behaviour) else list(behaviours)
        with self._lock:
            self._queues.setdefault(target, deque()).extend(items)

    def always(self, target: str, behaviour: Behaviour | None) -> None:
        """Use ``behaviour`` for every matching request with no queued behaviour (None removes it)."""
        with self._lock:
            if behaviour is None:
                self._sticky.pop(target, None)
            else:
                self._sticky[target] = behaviour

    def pending(self, target: str | None = None) -> int:
        """Number of queued behaviours not yet used (for ``target``, or in total)."""
        with self._lock:
            if target is not None:
                return len(self._queues.get(target, ()))
            return sum(len(q) for q in self._queues.values())

    def _next_behaviour(self, rec: RecordedRequest) -> Behaviour:
        with self._lock:
            for target, queue in self._queues.items():
                if queue and _target_matches(target, rec):
                    return queue.popleft()
            for target, behaviour in self._sticky.items():
                if _target_matches(target, rec):
                    return behaviour
        return _behaviour_from_model(rec.model)

    # -- recording API ---------------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def find(self, target: str = "*") -> list[RecordedRequest]:
        """Recorded requests matching ``target`` (same syntax as :meth:`script`; ``/...`` is a path prefix)."""
        return [rec for rec in self.requests if _target_matches(target, rec)]

    def last(self, target: str = "*") -> RecordedRequest:
        """The most recent request matching ``target``; raises LookupError if there is none."""
        found = self.find(target)
        if not found:
            seen = [f"{r.method} {r.path}" for r in self.requests]
            raise LookupError(f"no recorded request matches {target!r}; received: {seen}")
        return found[-1]

    def count(self, target: str = "*") -> int:
        return len(self.find(target))

    def clear(self) -> None:
        """Forget recorded requests."""
        with self._lock:
            self._requests.clear()

    def reset(self) -> None:
        """Forget recorded requests, queued and sticky behaviours."""
        with self._lock:
            self._requests.clear()
            self._queues.clear()
            self._sticky.clear()

    async def _record(self, request: Request, kind: str) -> RecordedRequest:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw=raw,
            kind=kind,
            time=time.time(),
        )
        with self._lock:
            self._requests.append(rec)
        return rec

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):024x}"

    # -- error bodies ----------------------------------------------------------------------------------------------

    def _error(self, flavor: Flavor, status: int, b: Behaviour | None = None, message: str | None = None) -> Response:
        b = b or Behaviour()
        message = b.message or message
        headers = dict(b.headers)
        body: dict[str, Any]
        if flavor == "anthropic":
            etype, default_msg = _ANTHROPIC_ERRORS.get(
                status, ("api_error" if status >= 500 else "invalid_request_error", "Error")
            )
            request_id = self._new_id("req_")
            headers.setdefault("request-id", request_id)
            body = {
                "type": "error",
                "error": {"type": b.error_type or etype, "message": message or default_msg},
                "request_id": request_id,
            }
        elif flavor == "azure":
            code = b.error_code or _AZURE_CODES.get(status, str(status))
            body = {"error": {"code": code, "message": message or f"Request failed with status {status}."}}
            headers.setdefault("apim-request-id", self._new_id(""))
        else:
            default = _OPENAI_ERRORS.get(
                status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error")
            )
            etype, default_code, default_msg = default
            body = {
                "error": {
                    "message": message or default_msg,
                    "type": b.error_type or etype,
                    "param": None,
                    "code": b.error_code or default_code,
                }
            }
            headers.setdefault("x-request-id", self._new_id("req_"))
        return JSONResponse(body, status_code=status, headers=headers)

    def _stream_error_frame(self, flavor: Flavor, b: Behaviour) -> bytes:
        if flavor == "anthropic":
            anthropic_error = {"type": b.error_type or "overloaded_error", "message": b.message or "Overloaded"}
            return _sse({"type": "error", "error": anthropic_error}, "error")
        error: dict[str, str | None] = {
            "message": b.message or "The server had an error while processing your request. Sorry about that!",
            "type": b.error_type or "server_error",
            "param": None,
            "code": b.error_code,
        }
        return _sse({"error": error})

    # -- auth ------------------------------------------------------------------------------------------------------

    def _openai_auth(self, rec: RecordedRequest) -> Response | None:
        auth = rec.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not _check_key(key.strip(), self.openai_keys, lambda k: k.startswith("sk-")):
            shown = f"{key[:3]}***{key[-4:]}" if len(key) > 8 else key or "<none>"
            msg = (
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
            if not key:
                msg = "You didn't provide an API key. You need to provide your API key in an Authorization header."
            return self._error("openai", 401, message=msg)
        return None

    def _anthropic_checks(self, rec: RecordedRequest) -> Response | None:
        key = rec.headers.get("x-api-key")
        if key is None and not self.anthropic_require_x_api_key:
            scheme, _, token = rec.headers.get("authorization", "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else None
        if not _check_key(key, self.anthropic_keys, lambda k: k.startswith("sk-")):
            return self._error("anthropic", 401, message="invalid x-api-key")
        if not rec.headers.get("anthropic-version"):
            return self._error("anthropic", 400, message="anthropic-version: header is required")
        return None

    def _azure_checks(self, rec: RecordedRequest, deployment: str) -> tuple[Response | None, str]:
        if not rec.query.get("api-version"):
            msg = "The api-version query parameter (?api-version=) is required for all requests."
            return self._error("azure", 400, Behaviour(error_code="MissingApiVersionParameter"), msg), ""
        if not _check_key(rec.headers.get("api-key"), self.azure_keys, bool):
            msg = (
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
                "key for an active subscription and use a correct regional API endpoint for your resource."
            )
            return self._error("azure", 401, message=msg), ""
        deployments = self.azure_deployments
        if deployments is not None and deployment not in deployments:
            msg = (
                "The API deployment for this resource does not exist. If you created the deployment within the "
                "last 5 minutes, please wait a moment and try again."
            )
            return self._error("azure", 404, message=msg), ""
        return None, deployments[deployment] if deployments is not None else deployment

    # -- routes ----------------------------------------------------------------------------------------------------

    async def _not_found(self, request: Request) -> Response:
        rec = await self._record(request, "unknown")
        message = f"Invalid URL ({rec.method} {rec.path})"
        if "anthropic-version" in rec.headers:
            return self._error("anthropic", 404, message=message)
        return self._error("openai", 404, Behaviour(error_code="unknown_url"), message)

    async def _list_models(self, request: Request) -> Response:
        if "anthropic-version" in request.headers:
            rec = await self._record(request, "anthropic.models")
            if denied := self._anthropic_checks(rec):
                return denied
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in self.models
            ]
            first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
            return JSONResponse({"data": data, "has_more": False, "first_id": first, "last_id": last})
        rec = await self._record(request, "openai.models")
        if denied := self._openai_auth(rec):
            return denied
        return JSONResponse({"object": "list", "data": [self._model_object(m) for m in self.models]})

    async def _get_model(self, request: Request) -> Response:
        rec = await self._record(request, "openai.models")
        if denied := self._openai_auth(rec):
            return denied
        model = request.path_params["model"]
        if model not in self.models:
            msg = f"The model '{model}' does not exist or you do not have access to it."
            return self._error("openai", 404, message=msg)
        return JSONResponse(self._model_object(model))

    @staticmethod
    def _model_object(model: str) -> dict[str, Any]:
        owner = "anthropic" if model.startswith("claude") else "openai"
        return {"id": model, "object": "model", "created": 1700000000, "owned_by": owner}

    async def _openai_chat(self, request: Request) -> Response:
        rec = await self._record(request, "openai.chat")
        if denied := self._openai_auth(rec):
            return denied
        if problem := self._validate_chat(rec, "openai"):
            return problem
        return await self._chat(request, rec, "openai", rec.body["model"])

    async def _azure_chat(self, request: Request) -> Response:
        rec = await self._record(request, "azure.chat")
        denied, model = self._azure_checks(rec, request.path_params["deployment"])
        if denied:
            return denied
        if problem := self._validate_chat(rec, "azure"):
            return problem
        return await self._chat(request, rec, "azure", model)

    async def _openai_embeddings(self, request: Request) -> Response:
        rec = await self._record(request, "openai.embeddings")
        if denied := self._openai_auth(rec):
            return denied
        return await self._embeddings(request, rec, "openai", None)

    async def _azure_embeddings(self, request: Request) -> Response:
        rec = await self._record(request, "azure.embeddings")
        denied, model = self._azure_checks(rec, request.path_params["deployment"])
        if denied:
            return denied
        return await self._embeddings(request, rec, "azure", model)

    async def _anthropic_messages(self, request: Request) -> Response:
        rec = await self._record(request, "anthropic.messages")
        if denied := self._anthropic_checks(rec):
            return denied
        body = rec.body
        if not isinstance(body, dict):
            return self._error("anthropic", 400, message="There was an error parsing the body of your request.")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return self._error("anthropic", 400, message=f"{name}: Field required")
        if not isinstance(body["messages"], list):
            return self._error("anthropic", 400, message="messages: Input should be a valid list")
        behaviour = self._next_behaviour(rec)
        if not await _pause(request, behaviour.delay):
            return Response(status_code=499)
        if behaviour.status:
            return self._error("anthropic", behaviour.status, behaviour)
        return self._anthropic_reply(rec, behaviour)

    # -- OpenAI / Azure chat ---------------------------------------------------------------------------------------

    def _validate_chat(self, rec: RecordedRequest, flavor: Flavor) -> Response | None:
        body = rec.body
        if not isinstance(body, dict):
            msg = "We could not parse the JSON body of your request."
            return self._error(flavor, 400, message=msg)
        if flavor == "openai" and not body.get("model"):
            return self._error(flavor, 400, message="you must provide a model parameter")
        if not isinstance(body.get("messages"), list):
            return self._error(flavor, 400, message="Missing required parameter: 'messages'.")
        return None

    async def _chat(self, request: Request, rec: RecordedRequest, flavor: Flavor, model: str) -> Response:
        body: dict[str, Any] = rec.body
        behaviour = self._next_behaviour(rec)
        if not await _pause(request, behaviour.delay):
            return Response(status_code=499)
        if behaviour.status:
            return self._error(flavor, behaviour.status, behaviour)
        model = behaviour.model or model
        messages: list[Any] = body["messages"]
        text = behaviour.text
        if text is None and not behaviour.tool_calls:
            text = f"echo: {_last_user_text(messages)}"
        finish = "tool_calls" if behaviour.tool_calls else "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if text and isinstance(limit, int) and _words(text) > limit:
            text, finish = "".join(_pieces(text)[:limit]).rstrip(), "length"
        finish = behaviour.finish_reason or finish
        tool_calls = [(tc.id or self._new_id("call_"), tc) for tc in behaviour.tool_calls]
        prompt = _prompt_tokens(messages)
        completion = _words(text or "") + sum(_words(tc.arguments_json()) + 1 for _, tc in tool_calls)
        usage = _openai_usage(prompt, completion)
        ident, created = self._new_id("chatcmpl-"), int(time.time())
        headers = {"x-request-id": self._new_id("req_"), **behaviour.headers}

        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
            if tool_calls:
                message["tool_calls"] = [
                    {"id": i, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments_json()}}
                    for i, tc in tool_calls
                ]
            choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            result: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage,
                "system_fingerprint": "fp_fake",
            }
            if flavor == "azure":
                choice["content_filter_results"] = _SAFE_FILTER
                result["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _SAFE_FILTER}]
            else:
                result["service_tier"] = "default"
            return JSONResponse(result, headers=headers)

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        base["system_fingerprint"] = "fp_fake"

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            data = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
            if include_usage:
                data["usage"] = None
            return _sse(data)

        frames: list[bytes] = []
        if flavor == "azure":
            frames.append(
                _sse(
                    {
                        "id": "",
                        "object": "",
                        "created": 0,
                        "model": "",
                        "choices": [],
                        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _SAFE_FILTER}],
                    }
                )
            )
        frames.append(chunk({"role": "assistant", "content": "" if text is not None else None, "refusal": None}))
        frames.extend(chunk({"content": piece}) for piece in _pieces(text or ""))
        for index, (call_id, tc) in enumerate(tool_calls):
            function = {"name": tc.name, "arguments": ""}
            frames.append(
                chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function", "function": function}]})
            )
            for part in _split(tc.arguments_json()):
                frames.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]}))
        frames.append(chunk({}, finish))
        if include_usage:
            frames.append(_sse({**base, "choices": [], "usage": usage}))
        frames.append(_sse("[DONE]"))
        return self._stream(frames, flavor, behaviour, headers)

    # -- embeddings ------------------------------------------------------------------------------------------------

    async def _embeddings(self, request: Request, rec: RecordedRequest, flavor: Flavor, model: str | None) -> Response:
        body = rec.body
        if not isinstance(body, dict) or "input" not in body:
            return self._error(flavor, 400, message="Missing required parameter: 'input'.")
        if model is None:
            if not body.get("model"):
                return self._error(flavor, 400, message="you must provide a model parameter")
            model = str(body["model"])
        raw_input = body["input"]
        if isinstance(raw_input, str) or (raw_input and all(isinstance(t, int) for t in raw_input)):
            inputs: list[Any] = [raw_input]
        elif isinstance(raw_input, list) and raw_input:
            inputs = raw_input
        else:
            return self._error(flavor, 400, message="'$.input' is invalid. Please check the API reference.")
        behaviour = self._next_behaviour(rec)
        if not await _pause(request, behaviour.delay):
            return Response(status_code=499)
        if behaviour.status:
            return self._error(flavor, behaviour.status, behaviour)
        dims = int(body.get("dimensions") or self.embedding_dimensions)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for index, item in enumerate(inputs):
            seed = item if isinstance(item, str) else json.dumps(item)
            tokens += _words(item) if isinstance(item, str) else len(item)
            vector = _vector(seed, dims)
            encoded: Any = vector
            if as_base64:
                encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        result = {
            "object": "list",
            "data": data,
            "model": behaviour.model or model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return JSONResponse(result, headers=dict(behaviour.headers))

    # -- Anthropic messages ----------------------------------------------------------------------------------------

    def _anthropic_reply(self, rec: RecordedRequest, behaviour: Behaviour) -> Response:
        body: dict[str, Any] = rec.body
        model = behaviour.model or str(body["model"])
        messages: list[Any] = body["messages"]
        text = behaviour.text
        if text is None and not behaviour.tool_calls:
            text = f"echo: {_last_user_text(messages)}"
        stop = "tool_use" if behaviour.tool_calls else "end_turn"
        limit = body.get("max_tokens")
        if text and isinstance(limit, int) and _words(text) > limit:
            text, stop = "".join(_pieces(text)[:limit]).rstrip(), "max_tokens"
        stop = behaviour.finish_reason or stop
        tools = [(tc.id or self._new_id("toolu_"), tc) for tc in behaviour.tool_calls]
        input_tokens = _prompt_tokens(messages, body.get("system"))
        output_tokens = max(1, _words(text or "") + sum(_words(tc.arguments_json()) + 1 for _, tc in tools))
        ident = self._new_id("msg_")
        headers = {"request-id": self._new_id("req_"), **behaviour.headers}
        blocks: list[dict[str, Any]] = []
        if text is not None:
            blocks.append({"type": "text", "text": text})
        blocks.extend({"type": "tool_use", "id": i, "name": tc.name, "input": tc.arguments_object()} for i, tc in tools)
        usage = {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }
        message: dict[str, Any] = {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return JSONResponse(message, headers=headers)

        start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        frames = [_sse({"type": "message_start", "message": start}, "message_start")]
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                empty: dict[str, Any] = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(block["text"])]
            else:
                empty = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                raw_args = json.dumps(block["input"], separators=(",", ":"))
                deltas = [{"type": "input_json_delta", "partial_json": part} for part in _split(raw_args)]
            frames.append(
                _sse({"type": "content_block_start", "index": index, "content_block": empty}, "content_block_start")
            )
            if index == 0:
                frames.append(_sse({"type": "ping"}, "ping"))
            frames.extend(
                _sse({"type": "content_block_delta", "index": index, "delta": d}, "content_block_delta") for d in deltas
            )
            frames.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        delta = {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}}
        frames.append(_sse({**delta, "usage": {"output_tokens": output_tokens}}, "message_delta"))
        frames.append(_sse({"type": "message_stop"}, "message_stop"))
        return self._stream(frames, "anthropic", behaviour, headers)

    # -- streaming -------------------------------------------------------------------------------------------------

    def _stream(self, frames: list[bytes], flavor: Flavor, b: Behaviour, headers: dict[str, str]) -> Response:
        error_frame = self._stream_error_frame(flavor, b)

        async def body() -> AsyncIterator[bytes]:
            for index, frame in enumerate(frames):
                if b.drop_after is not None and index >= b.drop_after:
                    raise DroppedConnection
                if b.fail_after is not None and index >= b.fail_after:
                    yield error_frame
                    return
                if index and b.chunk_delay:
                    await asyncio.sleep(b.chunk_delay)
                yield frame
            if b.drop_after is not None:
                raise DroppedConnection

        headers = {"cache-control": "no-cache", **headers}
        return StreamingResponse(body(), media_type="text/event-stream; charset=utf-8", headers=headers)


async def _pause(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``, returning False early if the client disconnects."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(remaining, 0.05))
        if await request.is_disconnected():
            return False
    return True


def _openai_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


_DIRECTIVES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "status": ("status", int),
    "delay": ("delay", float),
    "drop": ("drop_after", int),
    "fail_after": ("fail_after", int),
    "chunk_delay": ("chunk_delay", float),
    "text": ("text", str),
    "tool": ("tool_calls", lambda name: (ToolCall(name, {"arg": "value"}),)),
}


def _behaviour_from_model(model: str | None) -> Behaviour:
    """Parse ``;key=value`` directives from a model name (see the module docstring); bad ones are ignored."""
    if not model or ";" not in model:
        return Behaviour()
    fields: dict[str, Any] = {}
    for directive in model.split(";")[1:]:
        key, _, value = directive.partition("=")
        if spec := _DIRECTIVES.get(key.strip()):
            name, convert = spec
            try:
                fields[name] = convert(value)
            except ValueError:
                continue
    return Behaviour(**fields)


def create_fake_provider_app(**options: Any) -> FakeProvider:
    """Build a :class:`FakeProvider`; serve ``.app`` (e.g. with ``serve_in_thread``) and script/inspect the object."""
    return FakeProvider(**options)
