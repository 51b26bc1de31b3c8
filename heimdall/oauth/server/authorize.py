"""The authorization endpoint: validate the request, open a consent flow bound to this browser.

::

    MCP client            browser                         Heimdall
        |  open authorize URL  |                               |
        |--------------------->|  GET /api/oauth/per-user/authorize?client_id&redirect_uri
        |                      |  &code_challenge&state&scope&resource                     |
        |                      |------------------------------>| client + redirect_uri valid?
        |                      |                               |   no  -> 400 HTML page, no redirect
        |                      |                               |   other errors -> 302 redirect_uri?error&state&iss
        |                      |<-- 302 /oauth/consent?flow_id + Set-Cookie __bifrost_flow_secret
        |                      |   ... consent (consent.py) ... Finish
        |<-- 302 redirect_uri?code&state&iss ------------------|
        |  POST /api/oauth/per-user/token (code, code_verifier) -> tokens (tokens.py)

Order of checks (RFC 6749 §4.1.2.1): the client and its redirect URI first; if either is
invalid the user sees an error page and nothing is sent to the redirect URI. Every other error
is sent back to the client's redirect URI with ``error``, ``error_description``, ``state`` and
``iss`` (RFC 9207).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from heimdall.gateway import Gateway
from heimdall.oauth.server import clients, consent, urls
from heimdall.oauth.server.cimd import CIMDError
from heimdall.oauth.upstream.records import utcnow
from heimdall.store.per_user_models import ASPendingFlowRow

#: RFC 7636 §4.2: the S256 challenge is BASE64URL(SHA256(verifier)), 43 characters; allow the
#: whole unreserved range for robustness.
CHALLENGE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
MAX_STATE = 2048
MAX_SCOPE = 1024
MAX_RESOURCE = 2048


class AuthorizePageError(Exception):
    """The client or its redirect URI is invalid: show an error page, never redirect."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuthorizeRedirectError(Exception):
    """Any other error, sent back to the validated redirect URI (RFC 6749 §4.1.2.1)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@dataclass(frozen=True, slots=True)
class StartedFlow:
    flow_id: str
    #: The raw browser secret for the ``__bifrost_flow_secret`` cookie (only its keyed hash is stored).
    browser_secret: str
    max_age: int


def _single(params: list[tuple[str, str]]) -> tuple[dict[str, str], set[str]]:
    """Parameters by name, and the names sent more than once (RFC 6749 §3.1 forbids repeats)."""
    values: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in params:
        if name in values:
            repeated.add(name)
        values[name] = value
    return values, repeated


async def _validated_client(gateway: Gateway, values: dict[str, str], repeated: set[str]) -> tuple[str, str]:
    client_id = values.get("client_id", "")
    redirect_uri = values.get("redirect_uri", "")
    if {"client_id", "redirect_uri"} & repeated:
        raise AuthorizePageError("client_id and redirect_uri must each be sent once")
    if not client_id or not redirect_uri:
        raise AuthorizePageError("client_id and redirect_uri are required")
    try:
        client = await clients.load_client(gateway, client_id)
    except CIMDError as exc:
        raise AuthorizePageError(f"The client's metadata document cannot be used: {exc}") from None
    if client is None:
        raise AuthorizePageError("Unknown client_id")
    if redirect_uri not in client.redirect_uris:
        raise AuthorizePageError("redirect_uri not registered for this client")
    return client_id, redirect_uri


def _scope(gateway: Gateway, requested: str | None) -> str | None:
    """The granted scope string, or None when a requested scope is unknown (RFC 6749 §3.3)."""
    supported = list(gateway.snapshot.per_user_oauth.scopes_supported)
    if requested is None or not requested.strip():
        return " ".join(supported)
    wanted = list(dict.fromkeys(requested.split()))
    if any(scope not in supported for scope in wanted):
        return None
    return " ".join(wanted)


async def start(gateway: Gateway, params: list[tuple[str, str]]) -> StartedFlow:
    """Validate an authorization request and create its pending consent flow.

    Raises:
        AuthorizePageError: invalid client or redirect URI.
        AuthorizeRedirectError: any other invalid parameter.
    """
    values, repeated = _single(params)
    client_id, redirect_uri = await _validated_client(gateway, values, repeated)
    state = values.get("state")
    issuer = urls.issuer(gateway)

    def fail(error: str, description: str) -> AuthorizeRedirectError:
        location = urls.add_query(
            redirect_uri,
            {"error": error, "error_description": description, "state": state, "iss": issuer},
        )
        return AuthorizeRedirectError(location)

    if state is not None and (len(state) > MAX_STATE or "\x00" in state):
        state = None
        raise fail("invalid_request", f"state must be at most {MAX_STATE} characters")
    if repeated:
        raise fail("invalid_request", f"parameters sent more than once: {', '.join(sorted(repeated))}")
    if values.get("response_type") != "code":
        raise fail("unsupported_response_type", "response_type must be 'code'")
    challenge = values.get("code_challenge")
    method = values.get("code_challenge_method")
    if not challenge or not method:
        raise fail("invalid_request", "PKCE is required: code_challenge and code_challenge_method=S256")
    if method != "S256":
        raise fail("invalid_request", "code_challenge_method must be S256 (plain is not supported)")
    if not CHALLENGE.match(challenge):
        raise fail("invalid_request", "code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]")
    requested_scope = values.get("scope")
    scope = _scope(gateway, requested_scope) if requested_scope is None or len(requested_scope) <= MAX_SCOPE else None
    if scope is None:
        supported = " ".join(gateway.snapshot.per_user_oauth.scopes_supported)
        raise fail("invalid_scope", f"scope must be a subset of: {supported}")
    resource = values.get("resource")
    if resource is not None and (
        len(resource) > MAX_RESOURCE or not urls.same_resource(resource, urls.resource_url(gateway))
    ):
        raise fail("invalid_target", f"resource must be {urls.resource_url(gateway)}")

    config = gateway.snapshot.per_user_oauth
    flow_id = secrets.token_urlsafe(24)
    browser_secret = secrets.token_urlsafe(32)
    async with gateway.store.transaction() as session:
        session.add(
            ASPendingFlowRow(
                id=flow_id,
                client_id=client_id,
                redirect_uri=redirect_uri,
                code_challenge=challenge,
                state=state,
                scope=scope,
                resource=urls.resource_url(gateway),
                browser_secret_hash=gateway.box.lookup_hash(browser_secret),
                csrf_hash=gateway.box.lookup_hash(consent.csrf_token(gateway.box, flow_id, browser_secret)),
                identity_chosen=False,
                expires_at=utcnow() + timedelta(seconds=config.flow_ttl),
            )
        )
    await clients.mark_used(gateway, client_id)
    return StartedFlow(flow_id=flow_id, browser_secret=browser_secret, max_age=config.flow_ttl)
