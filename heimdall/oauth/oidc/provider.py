"""The OIDC provider's discovery document and signing keys, fetched with strict limits and cached.

Discovery (OpenID Connect Discovery 1.0 §4): ``GET <issuer>/.well-known/openid-configuration``;
the document's ``issuer`` must be the configured issuer (§4.3; one trailing slash is tolerated,
and from then on the document's spelling is used, as ID tokens carry it). Issuer and endpoints
must be HTTPS, or plain HTTP on a loopback address (a provider on the same machine).

The JWKS is cached too; an ID token signed with a key id the cache does not know triggers one
refetch (key rotation, Core §10.1.1). That refetch needs no rate limit: ID tokens reach us only
in the provider's own token response, after a code exchange, so nobody else can make us refetch.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from heimdall.oauth.oidc.errors import OIDCError
from heimdall.oauth.upstream.http import UpstreamHTTPError, get_json

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
METADATA_TTL = 3600.0
JWKS_TTL = 3600.0
_LOOPBACK_NAMES = frozenset({"localhost"})

UNREACHABLE = "The sign-in provider could not be reached or is not set up correctly. Ask your administrator."


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What the relying party needs from the discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str | None
    userinfo_endpoint: str | None
    token_endpoint_auth_methods_supported: tuple[str, ...] | None
    #: RFC 9207: the provider puts ``iss`` on its authorization responses.
    iss_parameter_supported: bool


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def acceptable_url(url: str) -> bool:
    """HTTPS, or HTTP on a loopback host; absolute, with a host and no fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.hostname or parts.fragment or "@" in parts.netloc:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname))


def _endpoint(doc: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = doc.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not acceptable_url(value):
        raise OIDCError(UNREACHABLE, status_code=502, title="Sign-in is not available")
    return value


def _strings(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def parse_metadata(configured_issuer: str, doc: dict[str, Any]) -> ProviderMetadata:
    """Check a discovery document against the configured issuer (Discovery §4.3).

    Raises:
        OIDCError: 502 when the issuer differs or a required endpoint is missing or unsafe.
    """
    issuer = doc.get("issuer")
    if not isinstance(issuer, str) or issuer.rstrip("/") != configured_issuer.rstrip("/"):
        raise OIDCError(UNREACHABLE, status_code=502, title="Sign-in is not available")
    authorization_endpoint = _endpoint(doc, "authorization_endpoint", required=True)
    token_endpoint = _endpoint(doc, "token_endpoint", required=True)
    assert authorization_endpoint is not None and token_endpoint is not None
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=authorization_endpoint,
        token_endpoint=token_endpoint,
        jwks_uri=_endpoint(doc, "jwks_uri", required=False),
        userinfo_endpoint=_endpoint(doc, "userinfo_endpoint", required=False),
        token_endpoint_auth_methods_supported=_strings(doc.get("token_endpoint_auth_methods_supported")),
        iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported") is True,
    )


@dataclass(slots=True)
class _Cached:
    value: Any
    fetched_at: float


class ProviderCache:
    """Discovery documents and key sets of OIDC providers, per process (one per app)."""

    def __init__(self, metadata_ttl: float = METADATA_TTL, jwks_ttl: float = JWKS_TTL) -> None:
        self.metadata_ttl = metadata_ttl
        self.jwks_ttl = jwks_ttl
        self._metadata: dict[str, _Cached] = {}
        self._jwks: dict[str, _Cached] = {}
        self._lock = asyncio.Lock()

    async def metadata(self, http: httpx.AsyncClient, issuer: str) -> ProviderMetadata:
        """The provider's metadata, from the cache when fresh.

        Raises:
            OIDCError: 502 when the document cannot be fetched or does not match the issuer.
        """
        if not acceptable_url(issuer):
            raise OIDCError(UNREACHABLE, status_code=502, title="Sign-in is not available")
        async with self._lock:
            cached = self._metadata.get(issuer)
            if cached is not None and time.monotonic() - cached.fetched_at < self.metadata_ttl:
                meta: ProviderMetadata = cached.value
                return meta
            doc = await _fetch(http, issuer.rstrip("/") + DISCOVERY_SUFFIX)
            meta = parse_metadata(issuer, doc)
            self._metadata[issuer] = _Cached(meta, time.monotonic())
            return meta

    async def keys(self, http: httpx.AsyncClient, meta: ProviderMetadata, *, refresh: bool = False) -> jwt.PyJWKSet:
        """The provider's signing keys; ``refresh`` refetches them (after an unknown key id).

        Raises:
            OIDCError: 502 when there is no usable key set.
        """
        if meta.jwks_uri is None:
            raise OIDCError(UNREACHABLE, status_code=502, title="Sign-in is not available")
        async with self._lock:
            cached = self._jwks.get(meta.jwks_uri)
            if cached is not None and not refresh and time.monotonic() - cached.fetched_at < self.jwks_ttl:
                keys: jwt.PyJWKSet = cached.value
                return keys
            doc = await _fetch(http, meta.jwks_uri)
            try:
                keys = jwt.PyJWKSet.from_dict(doc)
            except jwt.PyJWTError:
                raise OIDCError(UNREACHABLE, status_code=502, title="Sign-in is not available") from None
            self._jwks[meta.jwks_uri] = _Cached(keys, time.monotonic())
            return keys


async def _fetch(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        status, doc = await get_json(http, url)
    except (httpx.HTTPError, UpstreamHTTPError):
        raise OIDCError(UNREACHABLE, status_code=502, title="Sign-in is not available") from None
    if status != 200 or doc is None:
        raise OIDCError(UNREACHABLE, status_code=502, title="Sign-in is not available")
    return doc
