"""Find an upstream MCP server's authorization server, as the MCP authorization spec (2025-11-25) asks.

::

    POST <server> initialize ──401──▶ WWW-Authenticate: Bearer resource_metadata="…", scope="…"
          │
          ▼  RFC 9728: the challenge's resource_metadata, else the path-based, else the root document
    GET /.well-known/oauth-protected-resource[/<path>]  ──▶ resource, authorization_servers, scopes_supported
          │
          ▼  RFC 8414 path insertion, OpenID path insertion, OpenID path appending; issuer checked (§3.3)
    GET /.well-known/oauth-authorization-server[/<path>] ──▶ authorize, token, register, revoke endpoints

With no protected-resource metadata at all, the MCP server's origin is taken as the authorization
server (the 2025-03-26 fallback). Scopes: the challenge's ``scope``, else the resource's
``scopes_supported``, else none; scopes the admin configured always win.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from heimdall import __version__
from heimdall.oauth.upstream.http import UpstreamHTTPError, client_or_new, get_json, require_http_url

log = logging.getLogger(__name__)

#: Protocol version sent in the probe and on metadata requests (MCP 2025-11-25, "Protocol Version Header").
MCP_PROTOCOL_VERSION = "2025-11-25"
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*')
_SCHEME = re.compile(rf"\s*({_TOKEN})(?=\s|,|$)")


class DiscoveryError(Exception):
    """Discovery failed; the message says which document was missing or unusable."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """The ``Bearer`` challenge of a 401/403 (RFC 6750 §3, RFC 9728 §5.1)."""

    resource_metadata: str | None = None
    scopes: tuple[str, ...] | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ResourceMetadata:
    """RFC 9728 protected resource metadata, as fetched from ``url``."""

    url: str
    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class AuthServerMetadata:
    """RFC 8414 authorization server metadata (or an OpenID Connect discovery document), from ``url``."""

    url: str
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str | None = None
    revocation_endpoint: str | None = None
    scopes_supported: tuple[str, ...] | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    code_challenge_methods_supported: tuple[str, ...] | None = None
    authorization_response_iss_parameter_supported: bool = False


@dataclass(frozen=True, slots=True)
class Discovery:
    """Everything discovery learned about one upstream MCP server."""

    #: RFC 8707 resource indicator: the resource metadata's ``resource``, else the server URL.
    resource: str
    auth_server: AuthServerMetadata
    #: Chosen scopes (possibly empty: then no ``scope`` parameter is sent).
    scopes: tuple[str, ...]
    resource_metadata: ResourceMetadata | None = None
    challenge: Challenge | None = None


# --- WWW-Authenticate -----------------------------------------------------------------------


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_www_authenticate(header: str) -> dict[str, dict[str, str]]:
    """Split a ``WWW-Authenticate`` value into ``{scheme (lower case): {param (lower case): value}}``.

    Handles several challenges in one header (RFC 9110 §11.6.1) and quoted strings with escapes.
    """
    challenges: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    pos = 0
    while pos < len(header):
        if header[pos] in ", \t":
            pos += 1
            continue
        param = _PARAM.match(header, pos)
        if param is not None and current is not None:
            current.setdefault(param.group(1).lower(), _unquote(param.group(2)))
            pos = param.end()
            continue
        scheme = _SCHEME.match(header, pos)
        if scheme is None:
            break
        current = challenges.setdefault(scheme.group(1).lower(), {})
        pos = scheme.end()
    return challenges


def bearer_challenge(header: str | None) -> Challenge | None:
    """The Bearer challenge in a ``WWW-Authenticate`` header, if any."""
    if not header:
        return None
    params = parse_www_authenticate(header).get("bearer")
    if params is None:
        return None
    scope = params.get("scope")
    return Challenge(
        resource_metadata=params.get("resource_metadata") or None,
        scopes=tuple(scope.split()) if scope and scope.strip() else None,
        error=params.get("error") or None,
    )


# --- probe ------------------------------------------------------------------------------------


def _initialize_body() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": MCP_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "Heimdall MCP Gateway", "version": __version__},
        },
    }


async def probe(client: httpx.AsyncClient, server_url: str) -> Challenge | None:
    """Send a real MCP ``initialize`` without credentials and read the challenge of the 401 (or 403).

    SSE servers that do not take a POST on their URL are probed with a GET. A server that answers
    without asking for credentials gets its new session closed again (MCP streamable HTTP, DELETE).
    """
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with client.stream("POST", server_url, json=_initialize_body(), headers=headers) as response:
        status, www_authenticate = response.status_code, response.headers.get("www-authenticate")
        session_id = response.headers.get("mcp-session-id")
    if status in (404, 405):
        async with client.stream("GET", server_url, headers={"Accept": "text/event-stream"}) as response:
            status, www_authenticate = response.status_code, response.headers.get("www-authenticate")
    if 200 <= status < 300 and session_id:
        try:
            await client.delete(server_url, headers={"mcp-session-id": session_id})
        except httpx.HTTPError:
            pass  # best effort: the server reaps idle sessions anyway
    if status in (401, 403):
        return bearer_challenge(www_authenticate) or Challenge()
    return None


# --- RFC 9728 protected resource metadata -----------------------------------------------------


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _path(url: str) -> str:
    path = urlsplit(url).path
    return "" if path == "/" else path.rstrip("/")


def resource_metadata_urls(server_url: str, hinted: str | None) -> list[str]:
    """Candidates in the order of the MCP spec: the challenge's URL, path-based, then root (RFC 9728 §3.1)."""
    urls = [hinted] if hinted else []
    origin, path = _origin(server_url), _path(server_url)
    if path:
        urls.append(f"{origin}/.well-known/oauth-protected-resource{path}")
    urls.append(f"{origin}/.well-known/oauth-protected-resource")
    return list(dict.fromkeys(urls))


def resource_covers(resource: str, server_url: str) -> bool:
    """Whether ``resource`` identifies ``server_url`` or a parent of it (RFC 8707 §2, RFC 9728 §3.3)."""
    if _origin(resource).lower() != _origin(server_url).lower():
        return False
    parent, child = _path(resource), _path(server_url)
    return child == parent or child.startswith(parent + "/")


def _strings(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return tuple(value)


def _resource_metadata(url: str, doc: dict[str, Any], server_url: str) -> ResourceMetadata:
    resource = doc.get("resource")
    servers = _strings(doc.get("authorization_servers"))
    if not isinstance(resource, str) or not resource:
        raise DiscoveryError(f"protected resource metadata at {url} has no resource")
    if not resource_covers(resource, server_url):
        raise DiscoveryError(
            f"protected resource metadata at {url} names resource {resource!r}, which is not {server_url!r}"
        )
    if not servers:
        raise DiscoveryError(f"protected resource metadata at {url} names no authorization_servers")
    for server in servers:
        require_http_url(server, "authorization server")
    return ResourceMetadata(
        url=url,
        resource=resource,
        authorization_servers=servers,
        scopes_supported=_strings(doc.get("scopes_supported")),
    )


async def fetch_resource_metadata(
    client: httpx.AsyncClient, server_url: str, challenge: Challenge | None
) -> ResourceMetadata | None:
    """The first protected resource metadata document found, or None when the server publishes none."""
    hinted = challenge.resource_metadata if challenge else None
    if hinted:
        require_http_url(hinted, "resource_metadata")
    for url in resource_metadata_urls(server_url, hinted):
        status, doc = await get_json(client, url, {"MCP-Protocol-Version": MCP_PROTOCOL_VERSION})
        if status == 200 and doc is not None:
            return _resource_metadata(url, doc, server_url)
        log.debug("no protected resource metadata at %s (HTTP %d)", url, status)
    return None


# --- RFC 8414 / OpenID Connect authorization server metadata ----------------------------------


def auth_server_metadata_urls(issuer: str) -> list[str]:
    """Candidates in the order of the MCP spec (RFC 8414 §3.1, OpenID Connect Discovery §4)."""
    origin, path = _origin(issuer), _path(issuer)
    if path:
        return [
            f"{origin}/.well-known/oauth-authorization-server{path}",
            f"{origin}/.well-known/openid-configuration{path}",
            f"{origin}{path}/.well-known/openid-configuration",
        ]
    return [f"{origin}/.well-known/oauth-authorization-server", f"{origin}/.well-known/openid-configuration"]


def issuers_match(a: str, b: str) -> bool:
    """Simple string comparison (RFC 8414 §3.3), except that ``https://as`` and ``https://as/`` are one issuer."""
    if a == b:
        return True
    shorter, longer = sorted((a, b), key=len)
    return longer == shorter + "/" and shorter == _origin(shorter)


def _auth_server_metadata(url: str, doc: dict[str, Any]) -> AuthServerMetadata:
    def endpoint(name: str, required: bool) -> str | None:
        value = doc.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise DiscoveryError(f"authorization server metadata at {url} has no {name}")
        try:
            return require_http_url(value, name)
        except UpstreamHTTPError as exc:
            raise DiscoveryError(f"authorization server metadata at {url}: {exc}") from None

    authorize, token = endpoint("authorization_endpoint", True), endpoint("token_endpoint", True)
    assert authorize is not None and token is not None
    return AuthServerMetadata(
        url=url,
        issuer=str(doc["issuer"]),
        authorization_endpoint=authorize,
        token_endpoint=token,
        registration_endpoint=endpoint("registration_endpoint", False),
        revocation_endpoint=endpoint("revocation_endpoint", False),
        scopes_supported=_strings(doc.get("scopes_supported")),
        token_endpoint_auth_methods_supported=_strings(doc.get("token_endpoint_auth_methods_supported")),
        code_challenge_methods_supported=_strings(doc.get("code_challenge_methods_supported")),
        authorization_response_iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported")
        is True,
    )


async def fetch_auth_server_metadata(client: httpx.AsyncClient, issuer: str) -> AuthServerMetadata:
    """The authorization server's metadata; documents whose ``issuer`` differs are never used (RFC 8414 §3.3).

    Raises:
        DiscoveryError: no candidate URL served usable metadata for this issuer.
    """
    require_http_url(issuer, "issuer")
    rejected: list[str] = []
    for url in auth_server_metadata_urls(issuer):
        status, doc = await get_json(client, url, {"MCP-Protocol-Version": MCP_PROTOCOL_VERSION})
        if status >= 500:
            raise DiscoveryError(f"authorization server metadata at {url} failed with HTTP {status}")
        if status != 200 or doc is None:
            continue
        found = doc.get("issuer")
        if not isinstance(found, str) or not issuers_match(found, issuer):
            rejected.append(f"{url} names issuer {found!r}")
            continue
        metadata = _auth_server_metadata(url, doc)
        methods = metadata.code_challenge_methods_supported
        if methods is None or "S256" not in methods:
            # MCP 2025-11-25: a client MUST refuse to proceed without advertised PKCE support.
            raise DiscoveryError(f"authorization server {issuer} does not advertise PKCE S256 support")
        return metadata
    if rejected:
        raise DiscoveryError(f"authorization server metadata does not match issuer {issuer!r}: " + "; ".join(rejected))
    raise DiscoveryError(f"no authorization server metadata found for issuer {issuer!r}")


# --- putting it together ----------------------------------------------------------------------


def choose_scopes(
    configured: Sequence[str] | None, challenge: Challenge | None, resource: ResourceMetadata | None
) -> tuple[str, ...]:
    """Configured scopes > the challenge's ``scope`` > the resource's ``scopes_supported`` > none (MCP spec)."""
    if configured:
        return tuple(configured)
    if challenge is not None and challenge.scopes:
        return challenge.scopes
    if resource is not None and resource.scopes_supported:
        return resource.scopes_supported
    return ()


async def discover(
    server_url: str, *, scopes: Sequence[str] | None = None, http: httpx.AsyncClient | None = None
) -> Discovery:
    """Run the whole discovery for the MCP server at ``server_url``.

    Raises:
        DiscoveryError: a document was missing, malformed, unreachable, or failed a check.
    """
    try:
        require_http_url(server_url, "MCP server URL")
        async with client_or_new(http) as client:
            challenge = await probe(client, server_url)
            resource = await fetch_resource_metadata(client, server_url, challenge)
            issuer = resource.authorization_servers[0] if resource else _origin(server_url)
            auth_server = await fetch_auth_server_metadata(client, issuer)
    except UpstreamHTTPError as exc:
        raise DiscoveryError(str(exc)) from None
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"OAuth discovery for {server_url} failed: {type(exc).__name__}: {exc}") from None
    return Discovery(
        resource=resource.resource if resource else server_url,
        auth_server=auth_server,
        scopes=choose_scopes(scopes, challenge, resource),
        resource_metadata=resource,
        challenge=challenge,
    )
