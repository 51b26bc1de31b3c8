"""Sign-in, sign-out and the overview page at ``/``."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from heimdall.crypto import csrf_ok
from heimdall.oauth.per_user import grants
from heimdall.oauth.server.pages import render
from heimdall.store import mcp_repos, repos
from heimdall.ui.guard import AdminFormDep, AdminPage, gateway_of, safe_next, same_origin
from heimdall.ui.render import ADMIN_REFERRER_POLICY, page
from heimdall.ui.session import (
    clear_session_cookie,
    close_session,
    open_session,
    pre_cookie_name,
    pre_session,
    read_session,
    set_pre_session_cookie,
    set_session_cookie,
    sign_in_csrf,
)
from heimdall.ui.throttle import FailureThrottle

router = APIRouter(include_in_schema=False)


def sign_in_failures(request: Request) -> FailureThrottle:
    """This app's count of failed sign-ins (one per app, so tests and workers never share one)."""
    throttle: FailureThrottle | None = getattr(request.app.state, "sign_in_failures", None)
    if throttle is None:
        throttle = request.app.state.sign_in_failures = FailureThrottle()
    return throttle


def _sign_in_page(request: Request, next_path: str, error: str | None = None, status_code: int = 200) -> Response:
    gateway = gateway_of(request)
    value, is_new = pre_session(gateway, request)
    response = render(
        "admin/sign_in.html",
        status_code,
        csrf_token=sign_in_csrf(gateway, value),
        next_path=safe_next(next_path),
        error=error,
    )
    response.headers["Referrer-Policy"] = ADMIN_REFERRER_POLICY
    if is_new:
        set_pre_session_cookie(response, gateway, value)
    return response


@router.get("/sign-in")
async def sign_in_form(request: Request, next: str = "/") -> Response:
    if await read_session(gateway_of(request), request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _sign_in_page(request, next)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    admin_token: Annotated[str, Form(max_length=512)] = "",
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=512)] = "/",
) -> Response:
    gateway = gateway_of(request)
    value = request.cookies.get(pre_cookie_name(gateway), "")
    if not same_origin(request, gateway) or not value or not csrf_ok(sign_in_csrf(gateway, value), csrf_token):
        return _sign_in_page(request, next, "This sign-in form expired. Please try again.", 403)
    client = request.client.host if request.client else "unknown"
    failures = sign_in_failures(request)
    wait = failures.blocked_for(client)
    if wait:
        minutes = math.ceil(wait / 60)
        return _sign_in_page(request, next, f"Too many failed attempts. Try again in {minutes} minute(s).", 429)
    async with gateway.store.read() as session:
        matches = bool(admin_token) and await repos.admin_token_matches(session, gateway.box, admin_token)
    if not matches:
        failures.failed(client)
        return _sign_in_page(request, next, "That admin token is not valid.", 401)
    failures.succeeded(client)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(response, gateway, await open_session(gateway))
    return response


@router.post("/sign-out")
async def sign_out(request: Request, form: AdminFormDep) -> Response:
    gateway = gateway_of(request)
    await close_session(gateway, form.admin)
    response = RedirectResponse("/sign-in", status_code=303)
    clear_session_cookie(response, gateway)
    return response


@router.get("/")
async def overview(request: Request, admin: AdminPage) -> Response:
    gateway = gateway_of(request)
    async with gateway.store.read() as session:
        providers = len(await repos.list_providers(session))
        virtual_keys = len(await repos.list_virtual_keys(session))
        mcp_servers = await mcp_repos.count_clients(session)
        _, connected = await grants.list_grants(gateway, session, grants.GrantFilter(), limit=1, offset=0)
    steps = [
        (
            "Add an LLM provider",
            "Keys stay encrypted; aliases map friendly names to model ids.",
            "/providers/new",
            providers,
        ),
        (
            "Create a virtual key",
            "Give each application its own key, models and tools.",
            "/virtual-keys/new",
            virtual_keys,
        ),
        (
            "Add an MCP server",
            "Its tools become available on /mcp and on the LLM gateway.",
            "/mcp-servers/new",
            mcp_servers,
        ),
        (
            "Connect services per user",
            "Users connect their own accounts through consent.",
            "/connected-services",
            connected,
        ),
    ]
    return page(
        request,
        admin,
        "admin/overview.html",
        section="overview",
        counts={
            "providers": providers,
            "virtual_keys": virtual_keys,
            "mcp_servers": mcp_servers,
            "grants": connected,
        },
        steps=steps,
        base_url=gateway.settings.base_url,
    )
