"""The admin's OAuth sign-in for an MCP server (``/mcp-servers/pending/<oauth_config_id>``).

::

    page ── "Sign in with <server>" ──▶ popup: GET …/authorize (arms a fresh attempt) ──▶ upstream login
      │                                        ──▶ /api/oauth/callback: "you can close this window"
      ├─ polls GET …/status every second (JSON, session cookie)
      └─ status "authorized" ──▶ POST …/finish (CSRF) ──▶ complete-oauth / reconnect ──▶ the server's page

Without JavaScript the sign-in link opens a new tab and "I've signed in — finish setup" posts the
same form. The authorize URL never appears on the page: it is single-use and short-lived, so the
link arms a new attempt each time it is opened.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from heimdall.api import mcp_clients
from heimdall.errors import GatewayError
from heimdall.oauth.upstream import records
from heimdall.oauth.upstream.flow import OAuthConfigNotFound
from heimdall.ui.guard import AdminFormDep, AdminPage, gateway_of
from heimdall.ui.pages import mcp_logins
from heimdall.ui.pages.mcp_logins import Login
from heimdall.ui.pages.mcp_server_views import AUTH_LABELS
from heimdall.ui.render import page, redirect
from heimdall.ui.session import AdminSession, read_session

router = APIRouter(include_in_schema=False)

SECTION = "mcp_servers"
GONE = "This sign-in is finished or was discarded. Add the server again to start over."
NO_STORE = {"Cache-Control": "no-store"}
SETTLE_SECONDS = mcp_clients.SETTLE_SECONDS


def _server_page(login: Login) -> str:
    return f"/mcp-servers/{login.mcp_client_id}" if login.mcp_client_id else "/mcp-servers"


def _gone(request: Request, admin: AdminSession) -> Response:
    return page(request, admin, "admin/mcp_servers/not_found.html", section=SECTION, status_code=404, message=GONE)


@router.get("/mcp-servers/pending/{oauth_config_id}")
async def sign_in_page(oauth_config_id: str, request: Request, admin: AdminPage) -> Response:
    login = await mcp_logins.find_login(gateway_of(request), oauth_config_id)
    if login is None:
        return _gone(request, admin)
    if login.kind == "done":
        return redirect(request, _server_page(login), f"{login.name} is already set up.", "info")
    return page(
        request,
        admin,
        "admin/mcp_servers/sign_in.html",
        section=SECTION,
        login=login,
        auth_label=AUTH_LABELS.get(login.auth_type, login.auth_type),
    )


@router.get("/mcp-servers/pending/{oauth_config_id}/authorize")
async def authorize(oauth_config_id: str, request: Request, admin: AdminPage) -> Response:
    """Open the upstream login with a fresh attempt (the popup's first stop).

    A GET, so that a plain link can open it in a new window; the session cookie is ``SameSite=Strict``,
    so another site cannot make the admin's browser start an attempt.
    """
    gateway = gateway_of(request)
    login = await mcp_logins.find_login(gateway, oauth_config_id)
    if login is None:
        return _gone(request, admin)
    # Once signed in, a new attempt would only undo it (a shared server stops using its token while one runs).
    if login.kind == "done" or login.progress == "authorized":
        return RedirectResponse(login.href, status_code=303, headers=NO_STORE)
    try:
        authorize_url = await mcp_logins.arm(gateway, login)
    except OAuthConfigNotFound:
        return _gone(request, admin)
    # The upstream learns nothing about the admin UI from a Referer.
    return RedirectResponse(authorize_url, status_code=303, headers={**NO_STORE, "Referrer-Policy": "no-referrer"})


@router.get("/mcp-servers/pending/{oauth_config_id}/status")
async def sign_in_status(oauth_config_id: str, request: Request) -> Response:
    """The login's progress as JSON, polled by the sign-in page (session cookie; reads only)."""
    gateway = gateway_of(request)
    if await read_session(gateway, request) is None:
        return JSONResponse({"state": "signed_out", "message": "Your admin session ended."}, 401, headers=NO_STORE)
    login = await mcp_logins.find_login(gateway, oauth_config_id)
    if login is None:
        return JSONResponse({"state": "gone", "message": GONE, "next_url": None}, 404, headers=NO_STORE)
    expires_at = records.as_utc(login.expires_at)
    body = {
        "state": login.progress,
        "message": login.message,
        "next_url": _server_page(login) if login.progress == "done" else None,
        # Changes with every new attempt: the page ignores the outcome of the attempt before its click.
        "attempt": expires_at.isoformat() if expires_at else None,
    }
    return JSONResponse(body, headers=NO_STORE)


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    message: str
    next_url: str | None
    status_code: int = 200
    #: The server is gone with the failure (its verification failed): it has to be added again.
    start_over: bool = False

    @property
    def kind(self) -> Literal["success", "warning", "error"]:
        return "success" if self.ok else "error"


async def _complete_setup(request: Request, login: Login) -> Outcome:
    gateway = gateway_of(request)
    try:
        result = await mcp_clients.complete_oauth(login.oauth_config_id, request, gateway)
    except GatewayError as exc:
        now = await mcp_logins.find_login(gateway, login.oauth_config_id)
        if now is not None and now.kind == "done":  # finished by another tab a moment ago
            return Outcome(True, f"{now.name} is set up.", _server_page(now))
        if now is None:
            return Outcome(False, f"{exc.message}. Nothing was saved.", "/mcp-servers/new", exc.status_code, True)
        return Outcome(False, exc.message, None, exc.status_code)
    client_id = str(result["mcp_client_id"])
    if login.auth_type == "oauth":
        await _settle(request, client_id)
    return Outcome(True, str(result["message"]), f"/mcp-servers/{client_id}")


async def _settle(request: Request, client_id: str) -> None:
    """Wait (bounded) for a newly saved shared server's first connection, so its page shows the tools."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_SECONDS
    while loop.time() < deadline:
        try:
            view = await mcp_clients.get_client(client_id, request, gateway_of(request))
        except GatewayError:
            return
        if view.state != "connecting":
            return
        await asyncio.sleep(0.1)


async def _reconnect(request: Request, login: Login) -> Outcome:
    assert login.mcp_client_id is not None
    try:
        result = await mcp_clients.reconnect_client(login.mcp_client_id, request, gateway_of(request))
    except GatewayError as exc:
        return Outcome(False, f"Signed in, but {login.name} could not reconnect: {exc.message}", None, exc.status_code)
    return Outcome(True, f"Signed in to {login.name} again; it is {result['state']}.", _server_page(login))


async def _finish(request: Request, login: Login | None) -> Outcome:
    if login is None:
        return Outcome(False, GONE, "/mcp-servers", 404, True)
    if login.kind == "done":
        return Outcome(True, f"{login.name} is set up.", _server_page(login))
    if login.progress != "authorized":
        message = login.message
        if login.progress == "waiting":
            message = f"You have not finished signing in to {login.name} yet. Use “Sign in with {login.name}” first."
        return Outcome(False, message, None, 409)
    if login.kind == "reauth":
        return await _reconnect(request, login)
    return await _complete_setup(request, login)


@router.post("/mcp-servers/pending/{oauth_config_id}/finish")
async def finish(oauth_config_id: str, request: Request, form: AdminFormDep) -> Response:
    """Save the server once its login completed (``complete-oauth``), or reconnect a shared one."""
    outcome = await _finish(request, await mcp_logins.find_login(gateway_of(request), oauth_config_id))
    target = outcome.next_url or f"/mcp-servers/pending/{oauth_config_id}"
    moved = redirect(request, target, outcome.message, outcome.kind)
    if "application/json" not in request.headers.get("accept", ""):
        return moved
    body = {
        "ok": outcome.ok,
        "message": outcome.message,
        "next_url": outcome.next_url,
        "start_over": outcome.start_over,
    }
    answer = JSONResponse(body, 200 if outcome.ok else outcome.status_code, headers=NO_STORE)
    if outcome.ok:  # the page the script opens next shows the message, as after a form post
        for name, value in moved.raw_headers:
            if name == b"set-cookie":
                answer.raw_headers.append((name, value))
    return answer


@router.post("/mcp-servers/pending/{oauth_config_id}/discard")
async def discard(oauth_config_id: str, request: Request, form: AdminFormDep) -> Response:
    gateway = gateway_of(request)
    login = await mcp_logins.find_login(gateway, oauth_config_id)
    if login is None or login.kind != "setup":
        return redirect(request, "/mcp-servers", "There was nothing to discard.", "info")
    await mcp_logins.discard(gateway, login)
    return redirect(request, "/mcp-servers", f"Discarded {login.name}; nothing was saved.")
