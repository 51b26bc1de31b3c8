"""Discovery documents (RFC 9728, RFC 8414) and the availability gate of the authorization server.

The gateway is an authorization server only while at least one MCP client uses
``auth_type: per_user_oauth`` (reference.md §2); otherwise its discovery, registration,
authorization and token endpoints answer ``404 Not found``. The metadata advertises only what
is implemented (README "Discovery").
"""

from __future__ import annotations

from typing import Any

from heimdall.gateway import Gateway
from heimdall.oauth.server import urls

PER_USER_AUTH_TYPE = "per_user_oauth"


def available(gateway: Gateway) -> bool:
    """Whether any MCP client (pending verification or not) uses per-user OAuth."""
    mcp = gateway.mcp
    if mcp is None:
        return False
    return any(spec.auth_type == PER_USER_AUTH_TYPE for spec in mcp.catalog.specs.values())


def scopes_supported(gateway: Gateway) -> list[str]:
    return list(gateway.snapshot.per_user_oauth.scopes_supported)


def protected_resource_metadata(gateway: Gateway) -> dict[str, Any]:
    """RFC 9728 §2 metadata of ``<base>/mcp``."""
    return {
        "resource": urls.resource_url(gateway),
        "authorization_servers": [urls.issuer(gateway)],
        "scopes_supported": scopes_supported(gateway),
        "bearer_methods_supported": ["header"],
    }


def authorization_server_metadata(gateway: Gateway) -> dict[str, Any]:
    """RFC 8414 §2 metadata, with RFC 9207 ``iss`` and Client ID Metadata Document support."""
    base = urls.issuer(gateway)
    return {
        "issuer": base,
        "authorization_endpoint": base + urls.AUTHORIZE_PATH,
        "token_endpoint": base + urls.TOKEN_PATH,
        "registration_endpoint": base + urls.REGISTER_PATH,
        "revocation_endpoint": base + urls.REVOKE_PATH,
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": scopes_supported(gateway),
        "authorization_response_iss_parameter_supported": True,
        "client_id_metadata_document_supported": True,
    }
