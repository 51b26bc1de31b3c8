"""Heimdall as an OpenID Connect relying party: the authorization request, the code exchange, and who signed in.

::

    browser ──302──▶ authorization_endpoint?response_type=code&client_id&redirect_uri&scope
                         &state&nonce&code_challenge&code_challenge_method=S256
    provider ──302──▶ <base>/oauth/consent/oidc/callback?code&state[&iss]
    gateway  ──POST─▶ token_endpoint (client_secret_basic, or client_secret_post when that is all
                      the provider takes, or a public client: client_id + PKCE)
             ◀────── access_token, id_token
    gateway  validates the id_token (``id_token.validate``) and, when the user id claim is not in it
             (or there is no id_token), asks the userinfo endpoint (Core §5.3), whose ``sub`` must
             be the id_token's (Core §5.3.4).

The user id is the ``user_id_claim`` (default ``email``) or, when the provider does not release that
claim, ``sub``. An ``email`` the provider marks unverified (``email_verified: false``) is refused.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

import httpx

from heimdall.oauth.oidc import id_token
from heimdall.oauth.oidc.errors import OIDCError
from heimdall.oauth.oidc.provider import ProviderCache, ProviderMetadata
from heimdall.oauth.upstream.http import UpstreamHTTPError, get_json, post

log = logging.getLogger(__name__)

MAX_USER_ID = 255
TOKEN_FAILED = "The sign-in provider did not accept the sign-in. Please try again."
NOT_AUTHENTICATED = "The sign-in could not be verified. Please try again, or ask your administrator."
UNVERIFIED_EMAIL = "Your email address is not verified with the sign-in provider."
NO_USER_ID = "The sign-in provider did not say who you are. Ask your administrator."


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    """Who signed in: ``user_id`` is the identity Heimdall uses; ``subject`` the provider's ``sub``."""

    user_id: str
    subject: str
    issuer: str
    email: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderTokens:
    access_token: str | None
    id_token: str | None


def authorization_url(
    meta: ProviderMetadata,
    *,
    client_id: str,
    redirect_uri: str,
    scopes: list[str],
    state: str,
    nonce: str,
    code_challenge: str,
) -> str:
    """The authorization request (Core §3.1.2.1), keeping the endpoint's own query (RFC 6749 §3.1)."""
    ours = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
        "nonce": nonce,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    parts = urlsplit(meta.authorization_endpoint)
    kept = [(name, value) for name, value in parse_qsl(parts.query, keep_blank_values=True) if name not in ours]
    query = urlencode([*kept, *ours.items()])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _auth_method(meta: ProviderMetadata, client_secret: str | None) -> str:
    if client_secret is None:
        return "none"
    supported = meta.token_endpoint_auth_methods_supported
    # RFC 8414 §2: the default is client_secret_basic.
    if supported and "client_secret_basic" not in supported and "client_secret_post" in supported:
        return "client_secret_post"
    return "client_secret_basic"


async def exchange_code(
    http: httpx.AsyncClient,
    meta: ProviderMetadata,
    *,
    client_id: str,
    client_secret: str | None,
    code: str,
    redirect_uri: str,
    code_verifier: str,
) -> ProviderTokens:
    """Redeem the code (RFC 6749 §4.1.3, RFC 7636 §4.5).

    Raises:
        OIDCError: the provider refused, or answered something that is not a token response.
    """
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    headers: dict[str, str] = {}
    method = _auth_method(meta, client_secret)
    if method == "client_secret_basic":
        assert client_secret is not None
        # RFC 6749 §2.3.1: both parts form-encoded before Base64.
        pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    elif method == "client_secret_post":
        assert client_secret is not None
        data.update(client_id=client_id, client_secret=client_secret)
    else:
        data["client_id"] = client_id
    try:
        status, body, _ = await post(http, meta.token_endpoint, data=data, headers=headers)
    except (httpx.HTTPError, UpstreamHTTPError):
        log.warning("OIDC token request to %s failed (transport)", meta.token_endpoint)
        raise OIDCError(TOKEN_FAILED) from None
    if status != 200 or body is None:
        error = body.get("error") if body else None
        log.warning("OIDC token endpoint answered %s (error=%s)", status, str(error)[:64] if error else "-")
        raise OIDCError(TOKEN_FAILED)
    token_type = body.get("token_type")
    access = body.get("access_token")
    raw_id_token = body.get("id_token")
    if not isinstance(access, str) or not isinstance(token_type, str) or token_type.lower() != "bearer":
        log.warning("OIDC token endpoint answered without a bearer access token")
        raise OIDCError(TOKEN_FAILED)
    return ProviderTokens(access_token=access, id_token=raw_id_token if isinstance(raw_id_token, str) else None)


async def userinfo(http: httpx.AsyncClient, meta: ProviderMetadata, access_token: str) -> dict[str, Any]:
    """The userinfo response (Core §5.3.2; signed or encrypted responses are not supported).

    Raises:
        OIDCError: the endpoint failed or answered no ``sub``.
    """
    assert meta.userinfo_endpoint is not None
    try:
        status, body = await get_json(http, meta.userinfo_endpoint, {"Authorization": f"Bearer {access_token}"})
    except (httpx.HTTPError, UpstreamHTTPError):
        log.warning("OIDC userinfo request to %s failed (transport)", meta.userinfo_endpoint)
        raise OIDCError(NOT_AUTHENTICATED) from None
    if status != 200 or body is None or not isinstance(body.get("sub"), str) or not body["sub"]:
        log.warning("OIDC userinfo endpoint answered %s without a usable subject", status)
        raise OIDCError(NOT_AUTHENTICATED)
    return body


async def _id_token_claims(
    http: httpx.AsyncClient, cache: ProviderCache, meta: ProviderMetadata, raw: str, client_id: str, nonce: str
) -> dict[str, Any]:
    try:
        try:
            keys = await cache.keys(http, meta)
            return id_token.validate(raw, keys=keys, issuer=meta.issuer, client_id=client_id, nonce=nonce)
        except id_token.UnknownSigningKey:
            keys = await cache.keys(http, meta, refresh=True)
            return id_token.validate(raw, keys=keys, issuer=meta.issuer, client_id=client_id, nonce=nonce)
    except id_token.IDTokenError as exc:
        log.warning("OIDC sign-in refused: %s", exc)
        raise OIDCError(NOT_AUTHENTICATED) from None


def _user_id(claims: dict[str, Any], claim: str) -> str:
    if claim == "email" and claims.get("email_verified") in (False, "false"):
        raise OIDCError(UNVERIFIED_EMAIL)
    value = claims.get(claim)
    if not isinstance(value, str) or not value.strip():
        value = claims.get("sub")
    if not isinstance(value, str) or not value.strip():
        raise OIDCError(NO_USER_ID)
    value = value.strip()
    if len(value) > MAX_USER_ID or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise OIDCError(NO_USER_ID)
    return value


async def authenticate(
    http: httpx.AsyncClient,
    cache: ProviderCache,
    meta: ProviderMetadata,
    tokens: ProviderTokens,
    *,
    client_id: str,
    nonce: str,
    user_id_claim: str,
) -> AuthenticatedUser:
    """Who signed in, from a validated ID token and/or the userinfo endpoint.

    Raises:
        OIDCError: the ID token fails a check, userinfo is needed but unusable, or no user id.
    """
    claims: dict[str, Any] = {}
    if tokens.id_token is not None:
        claims = await _id_token_claims(http, cache, meta, tokens.id_token, client_id, nonce)
    need_userinfo = tokens.id_token is None or user_id_claim not in claims
    if need_userinfo and meta.userinfo_endpoint is not None and tokens.access_token:
        info = await userinfo(http, meta, tokens.access_token)
        if claims and info["sub"] != claims["sub"]:
            log.warning("OIDC sign-in refused: the userinfo subject differs from the ID token's")
            raise OIDCError(NOT_AUTHENTICATED)
        claims = {**info, **claims}
    if not claims:
        log.warning("OIDC sign-in refused: no ID token and no userinfo endpoint")
        raise OIDCError(NOT_AUTHENTICATED)
    email = claims.get("email")
    name = claims.get("name")
    return AuthenticatedUser(
        user_id=_user_id(claims, user_id_claim),
        subject=str(claims["sub"]),
        issuer=meta.issuer,
        email=email if isinstance(email, str) else None,
        name=name if isinstance(name, str) else None,
    )
