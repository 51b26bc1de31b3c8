"""The reusable OIDC sign-in: ``begin_login`` sends the browser to the provider, ``finish_login`` says who came back.

Contract (used by the consent flow here, and by any page that needs a signed-in user)::

    start = await begin_login(gateway, cache, flow_id=...)      # or next_path="/oauth/connections"
    response = RedirectResponse(start.authorize_url, 302)
    set_binding_cookie(response, gateway, start)                # the callback refuses other browsers
    ...
    GET /oauth/consent/oidc/callback?code&state[&iss]           # the one redirect URI for every purpose
    result = await finish_login(gateway, cache, params=..., cookies=request.cookies)
    result.user.user_id  -> the authenticated user id
    result.flow_id       -> set when begun with flow_id (the consent flow to update)
    result.next_path     -> set when begun with next_path (a relative path, already checked)

``finish_login`` claims the attempt (single use) before it talks to the provider, so a replayed
callback fails whatever happened the first time. Every failure is an ``OIDCError`` whose message
is safe to show; codes, tokens and secrets never reach a log line or a page.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from starlette.responses import Response

from heimdall.config.loader import resolve_env
from heimdall.crypto import CryptoError
from heimdall.gateway import Gateway
from heimdall.oauth.oidc import attempts
from heimdall.oauth.oidc.client import AuthenticatedUser, authenticate, authorization_url, exchange_code
from heimdall.oauth.oidc.errors import OIDCError
from heimdall.oauth.oidc.provider import UNREACHABLE, ProviderCache
from heimdall.oauth.settings import OIDCLogin
from heimdall.oauth.upstream.http import TOKEN_TIMEOUT, client_or_new
from heimdall.oauth.upstream.pkce import s256_challenge
from heimdall.oauth.upstream.records import utcnow

log = logging.getLogger(__name__)

MAX_NEXT = 1024
MAX_CODE = 4096
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

NOT_CONFIGURED = "Signing in with an identity provider is not set up on this gateway."
UNKNOWN_STATE = "This sign-in is not valid or has expired. Start again from the page you came from."
OTHER_BROWSER = (
    "This sign-in was started in another browser. For your safety it was not completed here: "
    "start again in this browser."
)
ALREADY_USED = "This sign-in was already completed or cancelled. Please start again."
EXPIRED = "This sign-in has expired. Please start again."
CHANGED = "The sign-in settings changed while you were signing in. Please start again."
MIX_UP = "The sign-in response came from an unexpected issuer."
NO_CODE = "The sign-in provider sent no authorization code. Please start again."


@dataclass(frozen=True, slots=True)
class LoginStart:
    """Where to send the browser, and the per-attempt cookie to set on that redirect."""

    authorize_url: str
    cookie_name: str
    binding: str
    max_age: int


@dataclass(frozen=True, slots=True)
class LoginResult:
    user: AuthenticatedUser
    flow_id: str | None
    next_path: str | None
    #: The attempt's binding cookie, to delete on the final response.
    cookie_name: str


def callback_url(gateway: Gateway) -> str:
    """The redirect URI to register at the provider: ``<public url>/oauth/consent/oidc/callback`` (W15)."""
    return gateway.settings.base_url.rstrip("/") + attempts.CALLBACK_PATH


def configured(gateway: Gateway) -> OIDCLogin:
    """The configured provider.

    Raises:
        OIDCError: 404 when no OIDC sign-in is configured.
    """
    oidc = gateway.snapshot.per_user_oauth.oidc
    if oidc is None:
        raise OIDCError(NOT_CONFIGURED, status_code=404, title="Sign-in is not available")
    return oidc


def client_secret(oidc: OIDCLogin) -> str | None:
    """The literal secret, or the value of its ``env.NAME``.

    Raises:
        OIDCError: 502 when the named environment variable is not set.
    """
    if oidc.client_secret is None:
        return None
    value = resolve_env(oidc.client_secret)
    if value is None:
        log.error("per_user_oauth.oidc.client_secret names an environment variable that is not set")
        raise OIDCError(UNREACHABLE, status_code=502, title="Sign-in is not available")
    return value


def safe_next(value: str | None) -> str | None:
    """``value`` when it is a path on this gateway (``/…``, not ``//host`` or ``/\\host``), else None."""
    if not value or len(value) > MAX_NEXT or not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


def set_binding_cookie(response: Response, gateway: Gateway, start: LoginStart) -> None:
    """The per-attempt browser binding: HttpOnly, sent only to the callback, ``SameSite=Lax`` (a top-level
    redirect from the provider carries it)."""
    response.set_cookie(
        start.cookie_name,
        start.binding,
        max_age=start.max_age,
        path=attempts.CALLBACK_PATH,
        secure=gateway.settings.base_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )


def clear_binding_cookie(response: Response, gateway: Gateway, cookie_name: str) -> None:
    response.delete_cookie(
        cookie_name,
        path=attempts.CALLBACK_PATH,
        secure=gateway.settings.base_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )


async def begin_login(
    gateway: Gateway,
    cache: ProviderCache,
    *,
    flow_id: str | None = None,
    next_path: str | None = None,
    http: httpx.AsyncClient | None = None,
) -> LoginStart:
    """Start a sign-in for a consent flow (``flow_id``, already checked by the caller) or for a page
    (``next_path``, a relative path checked with ``safe_next``). Exactly one of the two.

    Raises:
        OIDCError: 404 not configured; 502 the provider's discovery failed.
        ValueError: both or neither of ``flow_id`` and ``next_path``, or an unsafe ``next_path``.
    """
    if (flow_id is None) == (next_path is None):
        raise ValueError("begin_login needs exactly one of flow_id and next_path")
    if next_path is not None and safe_next(next_path) != next_path:
        raise ValueError("next_path must be a relative path on this gateway")
    oidc = configured(gateway)
    async with client_or_new(http) as client:
        meta = await cache.metadata(client, oidc.issuer)
    ttl = gateway.snapshot.per_user_oauth.flow_ttl
    redirect_uri = callback_url(gateway)
    async with gateway.store.transaction() as session:
        await attempts.sweep_expired(session, utcnow())
        attempt = attempts.create(
            session,
            gateway.box,
            issuer=oidc.issuer,
            client_id=oidc.client_id,
            redirect_uri=redirect_uri,
            ttl=ttl,
            flow_id=flow_id,
            next_path=next_path,
        )
    url = authorization_url(
        meta,
        client_id=oidc.client_id,
        redirect_uri=redirect_uri,
        scopes=list(oidc.scopes),
        state=attempt.state,
        nonce=attempt.nonce,
        code_challenge=s256_challenge(attempt.verifier),
    )
    return LoginStart(authorize_url=url, cookie_name=attempt.cookie_name, binding=attempt.binding, max_age=ttl)


@dataclass(frozen=True, slots=True)
class _Claimed:
    attempt_id: str
    flow_id: str | None
    next_path: str | None
    issuer: str
    client_id: str
    redirect_uri: str
    nonce: str
    verifier: str


async def _claim(gateway: Gateway, state: str | None, cookies: Mapping[str, str]) -> _Claimed:
    box = gateway.box
    async with gateway.store.transaction() as session:
        row = await attempts.find(session, box, state)
        if row is None:
            raise OIDCError(UNKNOWN_STATE)
        flow_id = row.flow_id
        if not attempts.bound(box, row, cookies.get(attempts.cookie_name(row.id))):
            raise OIDCError(OTHER_BROWSER, flow_id=flow_id)
        if row.used:
            raise OIDCError(ALREADY_USED, flow_id=flow_id)
        if attempts.expired(row):
            raise OIDCError(EXPIRED, flow_id=flow_id)
        if not await attempts.claim(session, row):
            raise OIDCError(ALREADY_USED, flow_id=flow_id)
        try:
            nonce, verifier = attempts.nonce_of(box, row), attempts.verifier_of(box, row)
        except CryptoError:
            raise OIDCError(EXPIRED, flow_id=flow_id) from None
        return _Claimed(
            attempt_id=row.id,
            flow_id=flow_id,
            next_path=row.next_path,
            issuer=row.issuer,
            client_id=row.client_id,
            redirect_uri=row.redirect_uri,
            nonce=nonce,
            verifier=verifier,
        )


async def finish_login(
    gateway: Gateway,
    cache: ProviderCache,
    *,
    params: Mapping[str, str],
    cookies: Mapping[str, str],
    http: httpx.AsyncClient | None = None,
) -> LoginResult:
    """Complete a sign-in from the callback's query ``params`` and the browser's ``cookies``.

    Order: the attempt named by ``state`` must exist and belong to this browser (its binding
    cookie), be unused and unexpired; it is then claimed (committed). Then: the provider's
    ``error`` (RFC 6749 §4.1.2.1), the configuration still naming the same provider, RFC 9207
    ``iss``, the code exchange, and the ID token / userinfo checks (``client.authenticate``).

    Raises:
        OIDCError: any failure; ``flow_id`` is set on it once the attempt is known.
    """
    claimed = await _claim(gateway, params.get("state"), cookies)
    try:
        error = params.get("error")
        if error is not None:
            code_text = error if _ERROR_CODE.match(error) else "unknown error"
            log.info("OIDC provider returned error=%s", code_text)
            raise OIDCError(f"The sign-in provider did not sign you in ({code_text}).")
        oidc = configured(gateway)
        if oidc.issuer != claimed.issuer or oidc.client_id != claimed.client_id:
            raise OIDCError(CHANGED)
        code = params.get("code")
        if not code or len(code) > MAX_CODE:
            raise OIDCError(NO_CODE)
        secret = client_secret(oidc)
        async with client_or_new(http, TOKEN_TIMEOUT) as client:
            meta = await cache.metadata(client, oidc.issuer)
            iss = params.get("iss")
            # RFC 9207 §2.4: a present iss must match; a provider that promises it must send it.
            if (iss is not None and iss != meta.issuer) or (iss is None and meta.iss_parameter_supported):
                raise OIDCError(MIX_UP)
            tokens = await exchange_code(
                client,
                meta,
                client_id=oidc.client_id,
                client_secret=secret,
                code=code,
                redirect_uri=claimed.redirect_uri,
                code_verifier=claimed.verifier,
            )
            user = await authenticate(
                client,
                cache,
                meta,
                tokens,
                client_id=oidc.client_id,
                nonce=claimed.nonce,
                user_id_claim=oidc.user_id_claim,
            )
    except OIDCError as exc:
        raise exc.for_flow(claimed.flow_id) from None
    return LoginResult(
        user=user,
        flow_id=claimed.flow_id,
        next_path=claimed.next_path,
        cookie_name=attempts.cookie_name(claimed.attempt_id),
    )
