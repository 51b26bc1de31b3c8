"""Browser pages of per-user OAuth: the connection link page and the user's connections page.

- ``GET /oauth/connect/{handoff_id}``: "Connect <service> for <identity>" and Continue; reads only.
- ``POST /oauth/connect/{handoff_id}``: CSRF-checked Continue; consumes the link, binds the login
  to this browser (cookie) and redirects to the upstream's authorization endpoint.
- ``GET /oauth/connections``: sign in (virtual key), then the identity's services with status,
  expiry and last use; ``POST …/connect``, ``…/disconnect``, ``…/sign-in``, ``…/sign-out``.

Every page cannot be framed, is not cached and sends no ``Referer`` (``pages.protect``).
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.responses import RedirectResponse, Response

from heimdall.api.deps import GatewayDep
from heimdall.gateway import Gateway
from heimdall.oauth.oidc.client import AuthenticatedUser
from heimdall.oauth.per_user import grants, handoffs, portal
from heimdall.oauth.per_user.connections import connect_link, services_for
from heimdall.oauth.per_user.identity import Identity, describe
from heimdall.oauth.server import pages as ui
from heimdall.oauth.server.bearer import virtual_key_by_id
from heimdall.store import repos

router = APIRouter(tags=["per-user OAuth (connections)"])

MAX_FORM_BYTES = 16 * 1024
MAX_VK_LENGTH = 512
SIGN_IN_PATH = f"{portal.PAGE_PATH}/sign-in"
SIGN_OUT_PATH = f"{portal.PAGE_PATH}/sign-out"
CONNECT_ACTION = f"{portal.PAGE_PATH}/connect"
DISCONNECT_ACTION = f"{portal.PAGE_PATH}/disconnect"
NOTICES = {"disconnected": "The service was disconnected.", "signed-in": "You are signed in."}
VK_INVALID = "Virtual Key not found or inactive. Please check and try again."
BAD_CSRF = "The form has expired or was not sent by this page. Reload the page and try again."


class _BadForm(Exception):
    pass


async def _form(request: Request) -> dict[str, str]:
    """A small form-encoded body (``_BadForm`` when too large or not UTF-8)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _BadForm
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise _BadForm from None


def _secure(gateway: Gateway) -> bool:
    return gateway.settings.base_url.startswith("https://")


def _see_other(location: str) -> Response:
    return ui.protect(RedirectResponse(location, status_code=303))


# --- connection links ---------------------------------------------------------------------------


@router.get(
    handoffs.CONNECT_PATH + "/{handoff_id}", response_class=HTMLResponse, summary="Connection link: confirm (HTML)"
)
async def connect_page(handoff_id: str, request: Request, gateway: GatewayDep) -> Response:
    try:
        view = await handoffs.page(gateway, handoff_id)
    except handoffs.HandoffError as exc:
        return ui.error_page(exc.status_code, exc.message, title="This link cannot be used", hint=None)
    secret = request.cookies.get(handoffs.PAGE_COOKIE)
    if not handoffs.valid_secret(secret):
        secret = handoffs.new_page_secret()
    assert secret is not None
    response = ui.render(
        "per_user/connect.html",
        service=view.service,
        identity=view.identity,
        expires_minutes=view.expires_minutes,
        action=f"{handoffs.CONNECT_PATH}/{handoff_id}",
        csrf_token=handoffs.csrf_token(gateway, handoff_id, secret),
    )
    response.set_cookie(
        handoffs.PAGE_COOKIE,
        secret,
        max_age=gateway.snapshot.per_user_oauth.handoff_ttl,
        path=handoffs.CONNECT_PATH,
        secure=_secure(gateway),
        httponly=True,
        samesite="lax",
    )
    return response


@router.post(handoffs.CONNECT_PATH + "/{handoff_id}", summary="Connection link: continue to the service's sign-in")
async def connect_continue(handoff_id: str, request: Request, gateway: GatewayDep) -> Response:
    try:
        form = await _form(request)
        handoffs.check_csrf(gateway, handoff_id, request.cookies.get(handoffs.PAGE_COOKIE), form.get("csrf_token"))
        start = await handoffs.begin_login(gateway, handoff_id)
    except _BadForm:
        return ui.error_page(400, "The form is too large or not valid UTF-8.", title="This link cannot be used")
    except handoffs.HandoffError as exc:
        return ui.error_page(exc.status_code, exc.message, title="This link cannot be used", hint=None)
    response = RedirectResponse(start.authorize_url, status_code=302)
    response.set_cookie(
        handoffs.ATTEMPT_COOKIE,
        start.binding,
        max_age=start.max_age,
        path=handoffs.ATTEMPT_COOKIE_PATH,
        secure=_secure(gateway),
        httponly=True,
        samesite="lax",
    )
    return ui.protect(response)


# --- the user's connections page ----------------------------------------------------------------


def _sign_in_page(gateway: Gateway, request: Request, error: str | None = None, status_code: int = 200) -> Response:
    oidc = gateway.snapshot.per_user_oauth.oidc
    pre = request.cookies.get(portal.PRE_SESSION_COOKIE)
    if not handoffs.valid_secret(pre):
        pre = secrets.token_urlsafe(32)
    assert pre is not None
    response = ui.render(
        "per_user/sign_in.html",
        status_code,
        error=error,
        sign_in_action=SIGN_IN_PATH,
        csrf_token=portal.sign_in_csrf(gateway, pre),
        oidc_name=oidc.display_name if oidc is not None else None,
        oidc_url="/oauth/oidc/login?next=/oauth/connections",
    )
    portal.set_pre_session(response, gateway, pre)
    return response


async def _services(gateway: Gateway, identity: Identity) -> list[dict[str, Any]]:
    vk = virtual_key_by_id(gateway, identity.value) if identity.kind == "vk" else None
    async with gateway.store.read() as session:
        services = await services_for(gateway, session, identity_kind=identity.kind, identity=identity.value, vk=vk)
        found, _ = await grants.list_grants(
            gateway, session, grants.GrantFilter(identity.kind, identity.value), limit=1000
        )
    by_client = {grant.mcp_client_id: grant for grant in found}
    rows: list[dict[str, Any]] = []
    for service in services:
        grant = by_client.pop(service.mcp_client_id, None)
        rows.append(
            {
                "mcp_client_id": service.mcp_client_id,
                "name": service.name,
                "needs_reauth": service.needs_reauth,
                "allowed": True,
                "grant": grant.as_json() if grant else None,
            }
        )
    # Grants of services the identity may no longer use can still be disconnected.
    for grant in by_client.values():
        rows.append(
            {
                "mcp_client_id": grant.mcp_client_id,
                "name": grant.mcp_client_name,
                "needs_reauth": True,
                "allowed": False,
                "grant": grant.as_json(),
            }
        )
    return rows


@router.get(portal.PAGE_PATH, response_class=HTMLResponse, summary="Your connected services (HTML)")
async def connections_page(request: Request, gateway: GatewayDep) -> Response:
    cookie = request.cookies.get(portal.SESSION_COOKIE)
    identity = portal.read(gateway, cookie)
    if identity is None or cookie is None:
        return _sign_in_page(gateway, request)
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return ui.render(
        "per_user/connections.html",
        identity=describe(gateway, identity),
        notice=notice,
        services=await _services(gateway, identity),
        csrf_token=portal.csrf_token(gateway, cookie),
        connect_action=CONNECT_ACTION,
        disconnect_action=DISCONNECT_ACTION,
        sign_out_action=SIGN_OUT_PATH,
    )


@router.post(SIGN_IN_PATH, summary="Connections page: sign in with a virtual key (form)")
async def sign_in(request: Request, gateway: GatewayDep) -> Response:
    try:
        form = await _form(request)
    except _BadForm:
        return _sign_in_page(gateway, request, "The form is too large or not valid UTF-8.", 400)
    pre = request.cookies.get(portal.PRE_SESSION_COOKIE)
    if not handoffs.valid_secret(pre) or not portal.csrf_ok(
        portal.sign_in_csrf(gateway, pre or ""), form.get("csrf_token")
    ):
        return _sign_in_page(gateway, request, BAD_CSRF, 403)
    value = form.get("vk", "").strip()
    key = None
    if value and len(value) <= MAX_VK_LENGTH:
        async with gateway.store.read() as session:
            key = await repos.get_virtual_key_by_value(session, gateway.box, value)
    if key is None or not key.is_active:
        return _sign_in_page(gateway, request, VK_INVALID, 400)
    response = _see_other(f"{portal.PAGE_PATH}?{urlencode({'notice': 'signed-in'})}")
    portal.set_session(response, gateway, Identity("vk", key.id))
    return response


async def _signed_in_form(request: Request, gateway: Gateway) -> tuple[Identity, dict[str, str]] | Response:
    """The signed-in identity and the form, or the response that refuses the request."""
    cookie = request.cookies.get(portal.SESSION_COOKIE)
    identity = portal.read(gateway, cookie)
    if identity is None or cookie is None:
        return _see_other(portal.PAGE_PATH)
    try:
        form = await _form(request)
    except _BadForm:
        return ui.error_page(400, "The form is too large or not valid UTF-8.", hint=None)
    if not portal.csrf_ok(portal.csrf_token(gateway, cookie), form.get("csrf_token")):
        return ui.error_page(403, BAD_CSRF, title="Request refused", hint=None)
    return identity, form


@router.post(SIGN_OUT_PATH, summary="Connections page: sign out (form)")
async def sign_out(request: Request, gateway: GatewayDep) -> Response:
    checked = await _signed_in_form(request, gateway)
    if isinstance(checked, Response):
        return checked
    response = _see_other(portal.PAGE_PATH)
    portal.clear_session(response, gateway)
    return response


@router.post(DISCONNECT_ACTION, summary="Connections page: disconnect a service (form)")
async def disconnect(request: Request, gateway: GatewayDep) -> Response:
    checked = await _signed_in_form(request, gateway)
    if isinstance(checked, Response):
        return checked
    identity, form = checked
    grant_id = form.get("grant_id", "")
    if not grant_id or len(grant_id) > 64 or not await grants.revoke_grant(gateway, grant_id, owner=identity):
        return ui.error_page(
            404, "This connection does not exist (any more).", title="Nothing to disconnect", hint=None
        )
    return _see_other(f"{portal.PAGE_PATH}?{urlencode({'notice': 'disconnected'})}")


@router.post(CONNECT_ACTION, summary="Connections page: connect or reconnect a service (form)")
async def connect(request: Request, gateway: GatewayDep) -> Response:
    checked = await _signed_in_form(request, gateway)
    if isinstance(checked, Response):
        return checked
    identity, form = checked
    mcp_client_id = form.get("mcp_client_id", "")
    vk = virtual_key_by_id(gateway, identity.value) if identity.kind == "vk" else None
    async with gateway.store.transaction() as session:
        allowed = await services_for(gateway, session, identity_kind=identity.kind, identity=identity.value, vk=vk)
        if mcp_client_id not in {service.mcp_client_id for service in allowed}:
            return ui.error_page(404, "This service is not available to you.", title="Cannot connect", hint=None)
        link = await connect_link(
            gateway,
            session,
            mcp_client_id=mcp_client_id,
            identity_kind=identity.kind,
            identity=identity.value,
            flow_id=None,
        )
    return _see_other(link)


async def sign_in_connections_page(request: Request, response: Response, user: AuthenticatedUser) -> None:
    """OIDC sign-in for the connections page: the signed-in user id becomes the page's identity."""
    gateway: Gateway = request.app.state.gateway
    portal.set_session(response, gateway, Identity("user", user.user_id))
