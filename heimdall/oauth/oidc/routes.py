"""HTTP endpoints of the OIDC sign-in (HTML pages and redirects; no admin auth).

* ``GET /oauth/consent/oidc/start?flow_id=`` — the consent page's "Sign in with …" link.
* ``GET /oauth/consent/oidc/callback`` — the provider's redirect back (the one redirect URI to
  register at the provider, for every purpose).
* ``GET /oauth/oidc/login?next=/path`` — sign in outside a consent flow, for a page that installed
  a login hook (``install_login_hook``); the hook receives the user and sets that page's session
  on the redirect to ``next``. Without a hook the path answers 404.

Every response carries the consent pages' security headers (no framing, no caching, no Referer).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from heimdall.api.deps import GatewayDep
from heimdall.gateway import Gateway
from heimdall.oauth.oidc import attempts, consent_login, login, views
from heimdall.oauth.oidc.client import AuthenticatedUser
from heimdall.oauth.oidc.errors import OIDCError
from heimdall.oauth.oidc.provider import ProviderCache
from heimdall.oauth.server import consent, pages, urls

log = logging.getLogger(__name__)

START_PATH = urls.OIDC_START_PATH
CALLBACK_PATH = attempts.CALLBACK_PATH
LOGIN_PATH = "/oauth/oidc/login"
#: Query parameters of the callback that must appear at most once.
_CALLBACK_PARAMS = ("state", "code", "error", "iss")

BAD_NEXT = "The page to return to after signing in must be a path on this gateway."
LOGIN_UNAVAILABLE = "Signing in is not available here."

#: Sets the session of the page that asked for the sign-in on ``response`` (a redirect to ``next``).
LoginHook = Callable[[Request, Response, AuthenticatedUser], Awaitable[None]]

router = APIRouter(tags=["per-user OAuth (OIDC sign-in)"])


def install_login_hook(app: Any, hook: LoginHook) -> None:
    """Enable ``/oauth/oidc/login`` on ``app`` (the FastAPI app): ``hook`` runs after every successful
    sign-in begun there, before the redirect to ``next`` is sent."""
    app.state.oidc_login_hook = hook


def _login_hook(request: Request) -> LoginHook | None:
    hook: LoginHook | None = getattr(request.app.state, "oidc_login_hook", None)
    return hook


def provider_cache(request: Request) -> ProviderCache:
    """The app's provider cache (created on first use)."""
    cache: ProviderCache | None = getattr(request.app.state, "oidc_provider_cache", None)
    if cache is None:
        cache = ProviderCache()
        request.app.state.oidc_provider_cache = cache
    return cache


def _to_provider(gateway: Gateway, start: login.LoginStart) -> Response:
    response = RedirectResponse(start.authorize_url, status_code=302)
    login.set_binding_cookie(response, gateway, start)
    return pages.protect(response)


@router.get(START_PATH, summary="Consent: sign in with the configured OpenID Connect provider (redirect)")
async def consent_oidc_start(request: Request, gateway: GatewayDep) -> Response:
    flow_id = request.query_params.get("flow_id")
    try:
        start = await consent_login.start(
            gateway, provider_cache(request), flow_id, request.cookies.get(consent.FLOW_COOKIE)
        )
    except consent.ConsentError as exc:
        return views.error_page(
            OIDCError(exc.message, status_code=exc.status_code, title="This sign-in cannot be used")
        )
    except OIDCError as exc:
        return views.error_page(exc.for_flow(flow_id))
    return _to_provider(gateway, start)


def _callback_params(request: Request) -> dict[str, str]:
    seen: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in _CALLBACK_PARAMS:
            continue
        if name in seen or "\x00" in value:
            raise OIDCError(login.UNKNOWN_STATE)
        seen[name] = value
    return seen


async def _finish(request: Request, gateway: Gateway, cookies: Mapping[str, str]) -> Response:
    result = await login.finish_login(
        gateway, provider_cache(request), params=_callback_params(request), cookies=cookies
    )
    if result.flow_id is not None:
        location = await consent_login.complete(gateway, result, cookies.get(consent.FLOW_COOKIE))
        response: Response = RedirectResponse(location, status_code=302)
    else:
        hook = _login_hook(request)
        next_path = login.safe_next(result.next_path)
        if hook is None or next_path is None:
            raise OIDCError(LOGIN_UNAVAILABLE, status_code=404, title="Sign-in is not available")
        response = RedirectResponse(next_path, status_code=302)
        await hook(request, response, result.user)
    login.clear_binding_cookie(response, gateway, result.cookie_name)
    return response


@router.get(CALLBACK_PATH, summary="OpenID Connect redirect URI: completes a sign-in")
async def oidc_callback(request: Request, gateway: GatewayDep) -> Response:
    try:
        response = await _finish(request, gateway, request.cookies)
    except OIDCError as exc:
        log.info("OIDC sign-in failed: %s", exc.message)
        return views.error_page(exc)
    return pages.protect(response)


@router.get(LOGIN_PATH, summary="Sign in with the configured OpenID Connect provider, then return to next")
async def oidc_login(request: Request, gateway: GatewayDep) -> Response:
    next_path = login.safe_next(request.query_params.get("next"))
    if next_path is None:
        return views.error_page(OIDCError(BAD_NEXT, title="This sign-in link is not valid"))
    if _login_hook(request) is None:
        return views.error_page(OIDCError(LOGIN_UNAVAILABLE, status_code=404, title="Sign-in is not available"))
    try:
        start = await login.begin_login(gateway, provider_cache(request), next_path=next_path)
    except OIDCError as exc:
        return views.error_page(exc)
    return _to_provider(gateway, start)
