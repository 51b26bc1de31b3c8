"""Client ID Metadata Documents: an HTTPS URL as ``client_id``, whose JSON document we fetch.

(draft-ietf-oauth-client-id-metadata-document, as profiled by the MCP authorization spec
2025-11-25.) Fetching a URL that an unauthenticated caller chose is a server-side request
forgery risk, so the fetch is fenced in:

* HTTPS only, with a path, no user info, no fragment, no dot segments. Plain HTTP is accepted
  only when ``per_user_oauth.allow_private_cimd_hosts`` is on (for development and tests).
* The host name is resolved first; every address must be public (not private, loopback,
  link-local, multicast, reserved or unspecified) unless ``allow_private_cimd_hosts``. The
  connection then goes to the address that was checked (TLS still verifies the host name, via
  SNI), so DNS cannot be re-bound between the check and the request.
* No redirects are followed (a redirect could lead anywhere); 5 seconds for the whole fetch,
  DNS included; at most 64 KiB of body.
* The document's ``client_id`` must equal the URL exactly; shared-secret authentication
  methods are refused (the document is public, so a secret in it would be no secret).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx

from heimdall import __version__
from heimdall.oauth.server.urls import redirect_uri_problem

MAX_DOCUMENT_BYTES = 64 * 1024
FETCH_TIMEOUT = 5.0
#: How long a fetched document is trusted before it is fetched again.
CACHE_SECONDS = 300
MAX_URL_LENGTH = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CIMDError(Exception):
    """The URL or its document cannot be used as a client; ``str()`` is safe to show."""


@dataclass(frozen=True, slots=True)
class DocumentClient:
    """The parts of a metadata document the authorization server uses."""

    client_id: str
    client_name: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    scope: str | None
    client_uri: str | None
    logo_uri: str | None


def is_url_client_id(client_id: str) -> bool:
    return client_id.startswith(("https://", "http://"))


def check_client_id_url(url: str, *, allow_http: bool) -> SplitResult:
    """Validate the shape of a URL ``client_id``.

    Raises:
        CIMDError: not an acceptable client id URL.
    """
    if len(url) > MAX_URL_LENGTH or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise CIMDError("client_id URL is too long or contains spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 — raises ValueError for a malformed port
    except ValueError:
        raise CIMDError("client_id is not a valid URL") from None
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        raise CIMDError("a client_id URL must use https")
    if not parts.hostname or "@" in parts.netloc:
        raise CIMDError("a client_id URL must have a host and no user information")
    if "#" in url:
        raise CIMDError("a client_id URL must not have a fragment")
    if parts.path in ("", "/"):
        raise CIMDError("a client_id URL must have a path")
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        raise CIMDError("a client_id URL must not contain dot segments")
    return parts


def is_public_address(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CIMDError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise CIMDError(f"{host} has no addresses")
    return addresses


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise CIMDError(f"the client metadata document is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise CIMDError(f"the client metadata document is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch_document(
    url: str,
    *,
    allow_private: bool,
    time_limit: float = FETCH_TIMEOUT,
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> dict[str, Any]:
    """GET the metadata document at ``url`` under the rules of this module.

    Raises:
        CIMDError: the URL is refused, the fetch failed, or the body is not a JSON object.
    """
    parts = check_client_id_url(url, allow_http=allow_private)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(time_limit):
            addresses = await resolve(host, port)
            if not allow_private and not all(is_public_address(a) for a in addresses):
                raise CIMDError(f"{host} resolves to a private, loopback or otherwise non-public address")
            address = addresses[0]
            literal = f"[{address}]" if address.version == 6 else str(address)
            pinned = parts._replace(netloc=f"{literal}:{port}").geturl()
            extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
            headers = {
                "Host": parts.netloc,
                "Accept": "application/json",
                "User-Agent": f"Heimdall/{__version__}",
            }
            async with (
                httpx.AsyncClient(timeout=httpx.Timeout(time_limit), follow_redirects=False, trust_env=False) as client,
                client.stream("GET", pinned, headers=headers, extensions=extensions) as response,
            ):
                if response.is_redirect:
                    raise CIMDError("the client metadata document URL redirects; redirects are not followed")
                if response.status_code != 200:
                    raise CIMDError(f"fetching the client metadata document gave HTTP {response.status_code}")
                body = await _read_limited(response, max_bytes)
    except TimeoutError:
        raise CIMDError(f"fetching the client metadata document took longer than {time_limit:g}s") from None
    except httpx.HTTPError as exc:
        raise CIMDError(f"fetching the client metadata document failed: {type(exc).__name__}") from None
    try:
        document = json.loads(body)
    except ValueError:
        raise CIMDError("the client metadata document is not valid JSON") from None
    if not isinstance(document, dict):
        raise CIMDError("the client metadata document is not a JSON object")
    return document


def _strings(document: dict[str, Any], key: str, default: list[str]) -> list[str]:
    value = document.get(key, default)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CIMDError(f"{key} must be an array of strings")
    return value


def _optional_url(document: dict[str, Any], key: str) -> str | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("https://") or len(value) > MAX_URL_LENGTH:
        raise CIMDError(f"{key} must be an https URL")
    return value


def parse_document(url: str, document: dict[str, Any]) -> DocumentClient:
    """Check a fetched document and keep what the authorization server uses.

    Raises:
        CIMDError: the document does not describe a usable public client for this URL.
    """
    if document.get("client_id") != url:
        raise CIMDError("the document's client_id does not equal its URL")
    method = document.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise CIMDError("only public clients (token_endpoint_auth_method 'none') are supported")
    if "client_secret" in document or "client_secret_expires_at" in document:
        raise CIMDError("a client metadata document must not contain a client secret")
    redirect_uris = _strings(document, "redirect_uris", [])
    if not redirect_uris or len(redirect_uris) > 10:
        raise CIMDError("redirect_uris must list 1 to 10 redirect URIs")
    for uri in redirect_uris:
        problem = redirect_uri_problem(uri) if len(uri) <= MAX_URL_LENGTH else "is too long"
        if problem:
            raise CIMDError(f"redirect URI {uri[:200]!r} {problem}")
    grant_types = _strings(document, "grant_types", ["authorization_code"])
    if "authorization_code" not in grant_types:
        raise CIMDError("grant_types must include authorization_code")
    response_types = _strings(document, "response_types", ["code"])
    name = document.get("client_name", "")
    if not isinstance(name, str) or len(name) > 255:
        raise CIMDError("client_name must be a string of at most 255 characters")
    scope = document.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise CIMDError("scope must be a string")
    return DocumentClient(
        client_id=url,
        client_name=name.strip(),
        redirect_uris=tuple(redirect_uris),
        grant_types=tuple(grant_types),
        response_types=tuple(response_types),
        scope=scope,
        client_uri=_optional_url(document, "client_uri"),
        logo_uri=_optional_url(document, "logo_uri"),
    )
