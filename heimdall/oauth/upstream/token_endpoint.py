"""Requests to an upstream token endpoint: the code exchange (RFC 6749 §4.1.3) and refresh (§6).

Client authentication follows the method the registration named (RFC 6749 §2.3.1:
``client_secret_basic`` or ``client_secret_post``; ``none`` for public clients), and every request
carries the RFC 8707 ``resource``. Failures are classified the way reference.md §4.9 asks:

- ``permanent``: HTTP 401, or ``invalid_grant`` / ``unauthorized_client``: a human must log in again;
- ``rejected``: any other 4xx: retrying will not help, but the grant may still be good;
- ``transient``: 429, 5xx or a transport error: worth retrying.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx

from heimdall.oauth.upstream.http import TOKEN_TIMEOUT, UpstreamHTTPError, client_or_new, post

FailureKind = Literal["permanent", "rejected", "transient"]
PERMANENT_ERRORS = frozenset({"invalid_grant", "unauthorized_client"})


@dataclass(frozen=True, slots=True)
class UpstreamClient:
    """Heimdall as one registered client of one upstream authorization server."""

    client_id: str
    client_secret: str | None = field(repr=False)
    auth_method: str
    authorize_url: str
    token_url: str
    revocation_url: str | None = None
    scopes: tuple[str, ...] = ()
    #: RFC 8707 resource indicator (the MCP server), sent on authorize, token and refresh requests.
    resource: str | None = None
    issuer: str | None = None


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """A successful token response (RFC 6749 §5.1); tokens are kept out of ``repr``."""

    access_token: str = field(repr=False)
    token_type: str = "Bearer"
    #: None when the server sent no ``expires_in``: no known expiry (W17).
    expires_in: int | None = None
    refresh_token: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] | None = None


class TokenEndpointError(Exception):
    """The token endpoint refused or failed. ``str()`` carries the status and error code, never a token."""

    def __init__(self, kind: FailureKind, message: str, *, status: int | None = None, error: str | None = None) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.status = status
        self.error = error


def classify(status: int, error: str | None) -> FailureKind:
    """reference.md §4.9: 401 or invalid_grant/unauthorized_client → permanent; 429/5xx → transient."""
    if status == 401 or (error in PERMANENT_ERRORS and status < 500):
        return "permanent"
    if status == 429 or status >= 500:
        return "transient"
    return "rejected"


def authenticate(upstream: UpstreamClient, form: dict[str, str]) -> dict[str, str]:
    """Add client authentication to a token/revocation request; returns the extra headers (RFC 6749 §2.3.1)."""
    form["client_id"] = upstream.client_id
    if upstream.auth_method == "client_secret_basic" and upstream.client_secret is not None:
        # §2.3.1: the id and secret are form-urlencoded before they are joined and base64-encoded.
        pair = f"{quote(upstream.client_id, safe='')}:{quote(upstream.client_secret, safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}
    if upstream.auth_method == "client_secret_post" and upstream.client_secret is not None:
        form["client_secret"] = upstream.client_secret
    return {}


def _expires_in(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value) if value > 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip()) or None
    return None


def _token_response(body: dict[str, Any]) -> TokenResponse | None:
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        return None
    refresh = body.get("refresh_token")
    scope = body.get("scope")
    token_type = body.get("token_type")
    return TokenResponse(
        access_token=access,
        token_type=token_type if isinstance(token_type, str) and token_type else "Bearer",
        expires_in=_expires_in(body.get("expires_in")),
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        scopes=tuple(scope.split()) if isinstance(scope, str) else None,
    )


def _scrubbed(text: str, secrets: list[str]) -> str:
    """Servers sometimes echo the code or token they refuse; never carry it into messages or logs."""
    for secret in secrets:
        if len(secret) >= 8:
            text = text.replace(secret, "[redacted]")
    return text


async def request_token(client: httpx.AsyncClient, upstream: UpstreamClient, form: dict[str, str]) -> TokenResponse:
    """POST one token request and parse a JSON or form-encoded answer.

    Raises:
        TokenEndpointError: classified refusal or failure.
    """
    form = dict(form)
    if upstream.resource:
        form["resource"] = upstream.resource
    headers = authenticate(upstream, form)
    try:
        status, body, _ = await post(client, upstream.token_url, data=form, headers=headers)
    except (httpx.HTTPError, UpstreamHTTPError) as exc:
        raise TokenEndpointError("transient", f"token endpoint unreachable: {type(exc).__name__}") from None
    error = body.get("error") if body is not None else None
    error = error if isinstance(error, str) else None
    if status == 200 and error is None and body is not None:
        tokens = _token_response(body)
        if tokens is not None:
            return tokens
        raise TokenEndpointError("rejected", "token endpoint answered without an access_token", status=status)
    if status == 200:
        status = 400  # some servers (GitHub) report errors with a 200
    description = body.get("error_description") if body is not None else None
    message = f"token endpoint answered HTTP {status}"
    if error:
        message += f": {error}"
        if isinstance(description, str) and description:
            secret_fields = ("code", "code_verifier", "refresh_token", "client_secret")
            message += f" ({_scrubbed(description, [form[name] for name in secret_fields if name in form])[:200]})"
    raise TokenEndpointError(classify(status, error), message, status=status, error=error)


async def exchange_code(
    upstream: UpstreamClient, *, code: str, verifier: str, redirect_uri: str, http: httpx.AsyncClient | None = None
) -> TokenResponse:
    """Redeem an authorization code with its PKCE verifier and the pinned redirect URI (RFC 6749 §4.1.3)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier}
    async with client_or_new(http, TOKEN_TIMEOUT) as client:
        return await request_token(client, upstream, form)


async def refresh_grant(
    upstream: UpstreamClient, refresh_token: str, *, http: httpx.AsyncClient | None = None
) -> TokenResponse:
    """Use a refresh token (RFC 6749 §6); the scope is left out, so the original grant's scope applies."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    async with client_or_new(http, TOKEN_TIMEOUT) as client:
        return await request_token(client, upstream, form)
