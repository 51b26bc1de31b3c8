"""Dynamic client registration at an upstream authorization server (RFC 7591).

Heimdall registers itself once per OAuth configuration when the admin gave no ``client_id``. It
asks for a public client (``none``) unless the server's metadata lists only secret-based methods,
and from then on authenticates the way the registration *response* says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from heimdall.oauth.upstream.http import UpstreamHTTPError, client_or_new, post, require_http_url

CLIENT_NAME = "Heimdall MCP Gateway"
#: Token endpoint client authentication methods Heimdall implements (RFC 6749 §2.3.1, RFC 7591 §2).
AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")


class RegistrationError(Exception):
    """Registration was refused or answered with something unusable."""


@dataclass(frozen=True, slots=True)
class ClientRegistration:
    client_id: str
    client_secret: str | None = field(repr=False)
    token_endpoint_auth_method: str


def choose_auth_method(supported: Sequence[str] | None) -> str:
    """``none`` unless the server lists only other methods; then basic before post (RFC 8414's default)."""
    if not supported or "none" in supported:
        return "none"
    for method in ("client_secret_basic", "client_secret_post"):
        if method in supported:
            return method
    return "none"


def secret_auth_method(supported: Sequence[str] | None) -> str:
    """The method for a pre-registered client with a secret: basic unless the server lists only post."""
    if supported and "client_secret_basic" not in supported and "client_secret_post" in supported:
        return "client_secret_post"
    return "client_secret_basic"


async def register_client(
    registration_endpoint: str,
    *,
    redirect_uri: str,
    scopes: Sequence[str] = (),
    auth_methods_supported: Sequence[str] | None = None,
    http: httpx.AsyncClient | None = None,
) -> ClientRegistration:
    """Register Heimdall and return the issued credentials and the auth method to use.

    Raises:
        RegistrationError: the endpoint refused, failed, or returned no usable client.
    """
    requested = choose_auth_method(auth_methods_supported)
    metadata: dict[str, object] = {
        "client_name": CLIENT_NAME,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": requested,
    }
    if scopes:
        metadata["scope"] = " ".join(scopes)
    try:
        require_http_url(registration_endpoint, "registration endpoint")
        async with client_or_new(http) as client:
            status, body, _ = await post(client, registration_endpoint, json_body=metadata)
    except UpstreamHTTPError as exc:
        raise RegistrationError(str(exc)) from None
    except httpx.HTTPError as exc:
        message = f"client registration at {registration_endpoint} failed: {type(exc).__name__}"
        raise RegistrationError(message) from None
    if status not in (200, 201) or body is None:
        detail = ""
        if body is not None and isinstance(body.get("error"), str):
            detail = f": {body['error']}"
            if isinstance(body.get("error_description"), str):
                detail += f" ({body['error_description'][:200]})"
        raise RegistrationError(f"client registration at {registration_endpoint} was refused (HTTP {status}){detail}")
    client_id = body.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise RegistrationError(f"client registration at {registration_endpoint} returned no client_id")
    secret = body.get("client_secret")
    secret = secret if isinstance(secret, str) and secret else None
    method = body.get("token_endpoint_auth_method")
    if not isinstance(method, str):
        # RFC 7591 §2: the default is client_secret_basic; keep "none" only when no secret was issued.
        method = "client_secret_basic" if secret else requested
    if method not in AUTH_METHODS:
        raise RegistrationError(f"the authorization server assigned token_endpoint_auth_method {method!r}")
    if method != "none" and secret is None:
        raise RegistrationError(f"the authorization server assigned {method} but issued no client_secret")
    return ClientRegistration(client_id=client_id, client_secret=secret, token_endpoint_auth_method=method)
