"""Bounded HTTP for talking to upstream authorization servers: http(s) only, strict timeouts, size limits.

Every document we read from an upstream (metadata, registration and token responses) is read
through ``read_limited``, so a hostile or broken server cannot make the gateway buffer an
unbounded body or wait forever.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from heimdall import __version__

#: Discovery and registration calls (reference.md §3 "discovery calls 10 s").
DISCOVERY_TIMEOUT = 10.0
#: Token and revocation endpoint calls.
TOKEN_TIMEOUT = 20.0
#: Largest metadata, registration or token response we read.
MAX_RESPONSE_BYTES = 256 * 1024
USER_AGENT = f"Heimdall/{__version__}"


class UpstreamHTTPError(Exception):
    """A URL we refuse to fetch, or a response we cannot use. ``str()`` never contains secrets."""


def require_http_url(url: str, what: str) -> str:
    """Accept only absolute http(s) URLs with a host and no fragment (RFC 8414 §2, RFC 9728 §2)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamHTTPError(f"{what} must be an absolute http(s) URL, got {url!r}")
    if parts.fragment:
        raise UpstreamHTTPError(f"{what} must not have a fragment")
    return url


def new_client(timeout: float = DISCOVERY_TIMEOUT) -> httpx.AsyncClient:
    """A client for one OAuth exchange: no redirects followed, the given timeout for every phase."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False, headers={"User-Agent": USER_AGENT})


@asynccontextmanager
async def client_or_new(
    http: httpx.AsyncClient | None, seconds: float = DISCOVERY_TIMEOUT
) -> AsyncIterator[httpx.AsyncClient]:
    """Use the caller's client (not closed here), or a fresh one with a ``seconds`` timeout, closed on exit."""
    if http is not None:
        yield http
        return
    async with new_client(seconds) as client:
        yield client


async def read_limited(response: httpx.Response, limit: int = MAX_RESPONSE_BYTES) -> bytes:
    """Read a streamed response body, refusing more than ``limit`` bytes."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UpstreamHTTPError(f"response from {response.request.url} is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise UpstreamHTTPError(f"response from {response.request.url} is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(body: bytes, content_type: str) -> dict[str, Any] | None:
    """A JSON object, or a form-encoded body (some token endpoints, e.g. GitHub's, answer that way)."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    if "json" in content_type or text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
    if "x-www-form-urlencoded" in content_type or "text/plain" in content_type or "=" in text:
        pairs = parse_qsl(text, keep_blank_values=True)
        return dict(pairs) if pairs else None
    return None


async def get_json(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any] | None]:
    """GET a JSON document: ``(status, object or None)``. Transport errors propagate as ``httpx.HTTPError``."""
    request_headers = {"Accept": "application/json", **(headers or {})}
    async with client.stream("GET", url, headers=request_headers) as response:
        if response.status_code != 200:
            return response.status_code, None
        body = await read_limited(response)
        return response.status_code, parse_body(body, "application/json")


async def post(
    client: httpx.AsyncClient,
    url: str,
    *,
    data: dict[str, str] | None = None,
    json_body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any] | None, httpx.Headers]:
    """POST a form or JSON body: ``(status, parsed body or None, headers)``."""
    request_headers = {"Accept": "application/json", **(headers or {})}
    async with client.stream("POST", url, data=data, json=json_body, headers=request_headers) as response:
        body = await read_limited(response)
        return response.status_code, parse_body(body, response.headers.get("content-type", "")), response.headers
