"""Public URLs of the authorization server, and small URL rules shared by its modules.

Every absolute URL comes from ``gateway.settings.base_url`` (the configured public URL), never
from the ``Host`` header (W15). The issuer has no trailing slash: clients compare it, and the
RFC 9207 ``iss`` parameter, as exact strings.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from heimdall.gateway import Gateway

PRM_PATH = "/.well-known/oauth-protected-resource"
AS_METADATA_PATH = "/.well-known/oauth-authorization-server"
AUTHORIZE_PATH = "/api/oauth/per-user/authorize"
TOKEN_PATH = "/api/oauth/per-user/token"
REGISTER_PATH = "/api/oauth/per-user/register"
REVOKE_PATH = "/api/oauth/per-user/revoke"
CONSENT_PATH = "/oauth/consent"
SERVICES_PATH = "/oauth/consent/mcps"
OIDC_START_PATH = "/oauth/consent/oidc/start"
CONSENT_VK_PATH = "/api/oauth/per-user/consent/vk"
CONSENT_USER_ID_PATH = "/api/oauth/per-user/consent/user-id"
CONSENT_SKIP_PATH = "/api/oauth/per-user/consent/skip"
CONSENT_SUBMIT_PATH = "/api/oauth/per-user/consent/submit"

#: Host names RFC 8252 §7.3 treats as loopback redirect targets (``localhost`` is tolerated, §8.3).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def issuer(gateway: Gateway) -> str:
    return gateway.settings.base_url.rstrip("/")


def resource_url(gateway: Gateway) -> str:
    """The RFC 8707 resource (audience) of every access token we issue."""
    return f"{issuer(gateway)}/mcp"


def resource_metadata_url(gateway: Gateway) -> str:
    """The RFC 9728 §3.1 path-inserted metadata URL of ``<base>/mcp``."""
    return f"{issuer(gateway)}{PRM_PATH}/mcp"


def is_https(gateway: Gateway) -> bool:
    return issuer(gateway).startswith("https://")


def same_resource(a: str, b: str) -> bool:
    """Resource indicators match when equal, ignoring one trailing slash."""
    return a.rstrip("/") == b.rstrip("/")


def add_query(url: str, params: dict[str, str | None]) -> str:
    """``url`` with ``params`` appended, keeping its existing query (RFC 6749 §3.1.2); None values are dropped."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.extend((name, value) for name, value in params.items() if value is not None)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def host_of(url: str) -> str:
    """``host[:port]`` of a URL, for display."""
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1]


def is_loopback_url(url: str) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redirect_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be a redirect URI, or None.

    HTTPS anywhere, or plain HTTP to a loopback host (RFC 8252 §7.3, §8.3); absolute, no fragment
    (RFC 6749 §3.1.2), no user info. Private-use URI schemes (RFC 8252 §7.1) are not accepted.
    """
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in uri):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 — raises ValueError for a malformed port
    except ValueError:
        return "is not a valid URL"
    if "#" in uri:
        return "must not contain a fragment"
    if not parts.hostname:
        return "must be an absolute URL with a host"
    if "@" in parts.netloc:
        return "must not contain user information"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and parts.hostname.lower() in LOOPBACK_HOSTS:
        return None
    return "must use https, or http on a loopback address (127.0.0.1, [::1] or localhost)"
