"""Wire-level helpers of ``direct.py``: JSON-RPC answers, errors, challenges and per-version result fields."""

from __future__ import annotations

from functools import cache
from typing import Any

import mcp.types as types
import orjson
from mcp_types import methods as wire_methods
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from heimdall.llm.http1 import UpstreamResponse, header_value
from heimdall.mcp.runtime import UpstreamUnavailableError
from heimdall.mcp.transports import is_challenge


def connection_reason(exc: BaseException) -> str:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        current = current.__cause__ or current.__context__
    return str(exc) or type(exc).__name__


def check_header(name: str, value: str) -> None:
    if any(c in name for c in "\r\n:\0 ") or any(c in value for c in "\r\n\0"):
        raise UpstreamUnavailableError(f"invalid header {name!r} for the upstream request")


def challenge_of(response: UpstreamResponse) -> str | None:
    """The ``WWW-Authenticate`` value ("" when absent) of a 401/403 challenge; None when it is not one."""
    raw = header_value(response.headers, b"www-authenticate")
    value = raw.decode("latin-1") if raw is not None else ""
    return value if is_challenge(response.status, value) else None


def error_of(body: bytes) -> types.ErrorData | None:
    """The JSON-RPC error in a non-2xx body, if it is one."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("error"), dict):
        return None
    try:
        return types.ErrorData.model_validate(message["error"])
    except ValidationError:
        return None


def answer_of(message: Any, request_id: str) -> dict[str, Any] | types.ErrorData | None:
    """The result or error of a JSON-RPC response to ``request_id``; None when it is not one."""
    if isinstance(message, bytes):
        try:
            message = orjson.loads(message)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(message, dict) or message.get("id") != request_id:
        return None
    if isinstance(message.get("result"), dict):
        result: dict[str, Any] = message["result"]
        return result
    if isinstance(message.get("error"), dict):
        try:
            return types.ErrorData.model_validate(message["error"])
        except ValidationError:
            return None
    return None


@cache
def wire_fields(method: str, version: str) -> frozenset[str]:
    row = wire_methods.SERVER_RESULTS.get((method, version))
    if row is None:
        return frozenset()
    members = getattr(row, "__args__", (row,))
    fields: set[str] = set()
    for model in members:
        if isinstance(model, type) and issubclass(model, BaseModel):
            fields.update(info.alias or name for name, info in model.model_fields.items())
    return frozenset(fields)


@cache
def later_revision_fields(method: str, version: str) -> frozenset[str]:
    """Result keys only later revisions define; ``ClientSession.send_request`` drops them the same way."""
    if (method, version) not in wire_methods.SERVER_RESULTS or version not in KNOWN_PROTOCOL_VERSIONS:
        return frozenset()
    later: set[str] = set()
    for revision in KNOWN_PROTOCOL_VERSIONS[KNOWN_PROTOCOL_VERSIONS.index(version) + 1 :]:
        later |= wire_fields(method, revision)
    return frozenset(later) - wire_fields(method, version)
