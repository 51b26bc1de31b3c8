"""Completing a per-user upstream login at the shared ``/api/oauth/callback``.

The handler claims the callback when the ``state`` is one of ``oauth_user_attempts`` (else it
returns None and the next handler gets a turn). Then, in order:

1. the browser must hold the attempt's binding cookie (W12): a code delivered to another browser is
   refused and nothing changes;
2. an ``error`` from the upstream (RFC 6749 §4.1.2.1) fails the attempt;
3. the attempt is claimed once (single use) and must be unexpired;
4. RFC 9207: an ``iss`` that is not the template's issuer is a mix-up attempt;
5. the code is redeemed with the pinned redirect URI (W9), the PKCE verifier and the template's
   client authentication and ``resource``; the identity's row is upserted (W18) with the granted
   scopes (else the requested ones: a step-up's wider scopes, else the template's).

Then a consent flow's login returns to its services page; any other shows "You can close this tab."
Codes and tokens never reach a log line or a page.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from urllib.parse import urlencode

from fastapi import Request
from sqlalchemy import select, update
from starlette.responses import RedirectResponse, Response

from heimdall.api.oauth_routes import CallbackParams, failure_page
from heimdall.gateway import Gateway
from heimdall.oauth.per_user import handoffs, tokens
from heimdall.oauth.per_user.identity import Identity, parse_kind
from heimdall.oauth.per_user.locks import locks_for
from heimdall.oauth.server import pages
from heimdall.oauth.upstream import records, step_up
from heimdall.oauth.upstream.discovery import issuers_match
from heimdall.oauth.upstream.token_endpoint import TokenEndpointError, exchange_code
from heimdall.store.mcp_models import OAuthConfigRow
from heimdall.store.per_user_models import OAuthUserAttemptRow

log = logging.getLogger(__name__)

SERVICES_PATH = "/oauth/consent/mcps"
OTHER_BROWSER = (
    "This login was started in another browser. For your safety it was not completed here: "
    "open the connection link again in this browser."
)
ALREADY_USED = "This login was already completed or cancelled. Start the connection again."
EXPIRED = "This login has expired. Start the connection again."
NO_TEMPLATE = "This service is no longer set up for per-user sign-in."
MIX_UP = "The authorization response came from an unexpected issuer."


def _bound(gateway: Gateway, attempt: OAuthUserAttemptRow, binding: str | None) -> bool:
    if not handoffs.valid_secret(binding):
        return False
    assert binding is not None
    return hmac.compare_digest(handoffs.binding_hash(gateway, binding), attempt.browser_binding_hash)


def _clear_cookie(response: Response, gateway: Gateway) -> Response:
    response.delete_cookie(
        handoffs.ATTEMPT_COOKIE,
        path=handoffs.ATTEMPT_COOKIE_PATH,
        secure=gateway.settings.base_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )
    return response


def success_page() -> Response:
    """200 "Authorization Successful — You can close this tab.", telling the opener window (same origin only)."""
    nonce = secrets.token_urlsafe(16)
    response = pages.render("per_user/connected.html", nonce=nonce)
    response.headers["Content-Security-Policy"] = (
        f"frame-ancestors 'none'; default-src 'self'; script-src 'nonce-{nonce}'; base-uri 'none'"
    )
    return response


async def _set_status(gateway: Gateway, attempt_id: str, status: str, *, only_from: str) -> bool:
    async with gateway.store.transaction() as session:
        changed = await session.execute(
            update(OAuthUserAttemptRow)
            .where(OAuthUserAttemptRow.id == attempt_id, OAuthUserAttemptRow.status == only_from)
            .values(status=status, code_verifier_encrypted="", updated_at=records.utcnow())
            .execution_options(synchronize_session=False)
        )
    return getattr(changed, "rowcount", 0) == 1


async def per_user_callback(request: Request, gateway: Gateway, params: CallbackParams) -> Response | None:
    """The ``CallbackHandler`` of per-user logins (insert it first: ``callback_handlers(app).insert(0, …)``)."""
    if params.state is None or len(params.state) > 512:
        return None
    async with gateway.store.read() as session:
        attempt = (
            await session.scalars(
                select(OAuthUserAttemptRow).where(
                    OAuthUserAttemptRow.state_hash == gateway.box.lookup_hash(params.state)
                )
            )
        ).first()
    if attempt is None:
        return None
    if not _bound(gateway, attempt, request.cookies.get(handoffs.ATTEMPT_COOKIE)):
        log.warning("per-user login %s: callback from a browser without its binding cookie; refused", attempt.id)
        return failure_page(OTHER_BROWSER)
    if params.error is not None:
        await _set_status(gateway, attempt.id, "failed", only_from="pending")
        log.info("per-user login %s: the upstream refused (%s)", attempt.id, params.error[:64])
        return _clear_cookie(failure_page(params.error, params.error_description), gateway)
    if params.code is None:
        return None
    # Single use, across processes too: only one request moves the attempt out of ``pending``.
    if not await _set_status(gateway, attempt.id, "exchanging", only_from="pending"):
        return _clear_cookie(failure_page(ALREADY_USED), gateway)
    failed = await _complete(gateway, attempt, params)
    if failed is not None:
        return _clear_cookie(failed, gateway)
    if attempt.flow_id:
        location = f"{SERVICES_PATH}?{urlencode({'flow_id': attempt.flow_id})}"
        return _clear_cookie(pages.protect(RedirectResponse(location, status_code=302)), gateway)
    return _clear_cookie(success_page(), gateway)


async def _fail(gateway: Gateway, attempt_id: str, status: str = "failed") -> None:
    await _set_status(gateway, attempt_id, status, only_from="exchanging")


async def _complete(gateway: Gateway, attempt: OAuthUserAttemptRow, params: CallbackParams) -> Response | None:
    """Redeem the code and store the token; a failure page, or None on success."""
    assert params.code is not None
    expires_at = records.as_utc(attempt.expires_at)
    if expires_at is None or expires_at <= records.utcnow():
        await _fail(gateway, attempt.id, "expired")
        return failure_page(EXPIRED)
    kind = parse_kind(attempt.identity_kind)
    async with gateway.store.read() as session:
        template = await session.get(OAuthConfigRow, attempt.oauth_config_id) if attempt.oauth_config_id else None
    if template is None or kind is None:
        await _fail(gateway, attempt.id)
        return failure_page(NO_TEMPLATE)
    upstream = records.upstream_client(gateway.box, template)
    if params.iss is not None and upstream.issuer and not issuers_match(params.iss, upstream.issuer):
        await _fail(gateway, attempt.id)
        return failure_page(MIX_UP)
    verifier = gateway.box.decrypt(attempt.code_verifier_encrypted, context=handoffs.verifier_context(attempt.id))
    try:
        response = await exchange_code(upstream, code=params.code, verifier=verifier, redirect_uri=attempt.redirect_uri)
    except TokenEndpointError as exc:
        await _fail(gateway, attempt.id)
        log.warning("per-user login %s: code exchange failed: %s", attempt.id, exc)
        return failure_page(f"The service did not accept the login: {exc}", status_code=502)
    step = handoffs.attempt_step_up(attempt)
    await tokens.save_login(
        gateway.store,
        locks_for(gateway),
        mcp_client_id=attempt.mcp_client_id,
        oauth_config_id=template.id,
        identity=Identity(kind, attempt.identity),
        tokens=response,
        scopes=list(step.scopes if step is not None else template.scopes or ()),
        # Keeps the step-up count with the new grant, so that the bound holds across logins.
        status_reason=step_up.describe(step) if step is not None else None,
    )
    await _set_status(gateway, attempt.id, "authorized", only_from="exchanging")
    log.info("per-user login %s: %s connected for a %s identity", attempt.id, attempt.mcp_client_id, kind)
    return None
