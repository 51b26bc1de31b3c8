"""The MCP servers section (``/mcp-servers``): the list, adding, a server's page, edit, reconnect, delete.

Every change runs the management API's own handlers (``heimdall.api.mcp_clients``), so the UI and
``/api/mcp/...`` accept and refuse the same things; their errors become inline form errors.

Around this module: ``mcp_server_forms`` (forms ⇄ API bodies, errors ⇄ fields), ``mcp_server_views``
(badges, masked secrets, tool rows), ``mcp_sign_in`` (the OAuth sign-in pages that adding an ``oauth``
or ``per_user_oauth`` server needs) and ``mcp_logins`` (those sign-ins as stored).
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from heimdall.api import mcp_clients
from heimdall.api.mcp_client_views import MCPClientView
from heimdall.errors import GatewayError, NotFound
from heimdall.ui.guard import AdminFormDep, AdminPage, gateway_of
from heimdall.ui.pages import mcp_logins, mcp_sign_in
from heimdall.ui.pages.mcp_server_forms import (
    EditServerForm,
    FieldErrors,
    FormProblems,
    NewServerForm,
    edit_body,
    field_errors,
    new_server_body,
    summary,
)
from heimdall.ui.pages.mcp_server_views import (
    AUTH_LABELS,
    CONNECTION_LABELS,
    allowed_summary,
    login_row,
    masked,
    server_row,
    server_state,
    target_of,
    tool_rows,
)
from heimdall.ui.render import FlashKind, page, redirect
from heimdall.ui.session import AdminSession

router = APIRouter(include_in_schema=False)
router.include_router(mcp_sign_in.router)

PAGE_SIZE = 50
SECTION = "mcp_servers"


def _oauth_status_key(view: MCPClientView) -> str | None:
    """The OAuth configuration whose status decides a shared (``oauth``) server's ``needs_reauth``."""
    config_id = view.config.get("oauth_config_id")
    return str(config_id) if view.config.get("auth_type") == "oauth" and config_id else None


async def _oauth_statuses(request: Request, views: list[MCPClientView]) -> dict[str, tuple[str, str | None]]:
    ids = [key for key in map(_oauth_status_key, views) if key]
    return await mcp_logins.oauth_statuses(gateway_of(request), ids)


async def _view(request: Request, client_id: str) -> MCPClientView | None:
    try:
        return await mcp_clients.get_client(client_id, request, gateway_of(request))
    except NotFound:
        return None


def _not_found(request: Request, admin: AdminSession) -> Response:
    return page(request, admin, "admin/mcp_servers/not_found.html", section=SECTION, status_code=404)


# --- the list ----------------------------------------------------------------------------------


@router.get("/mcp-servers")
async def list_servers(
    request: Request,
    admin: AdminPage,
    search: Annotated[str, Query(max_length=64)] = "",
    page_number: Annotated[int, Query(alias="page", ge=1, le=10_000)] = 1,
) -> Response:
    gateway = gateway_of(request)
    listed = await mcp_clients.list_clients(
        request, gateway, search=search or None, limit=PAGE_SIZE, offset=(page_number - 1) * PAGE_SIZE
    )
    statuses = await _oauth_statuses(request, listed.clients)
    rows = [server_row(view, statuses.get(_oauth_status_key(view) or "")) for view in listed.clients]
    waiting = [login_row(login) for login in await mcp_logins.pending_setups(gateway)] if page_number == 1 else []
    pages = max(1, math.ceil(listed.total_count / PAGE_SIZE))
    return page(
        request,
        admin,
        "admin/mcp_servers/list.html",
        section=SECTION,
        rows=rows,
        waiting=waiting,
        search=search,
        total=listed.total_count,
        page_number=page_number,
        pages=pages,
    )


# --- adding ------------------------------------------------------------------------------------


def _new_page(
    request: Request, admin: AdminSession, shown: NewServerForm, errors: dict[str, str], status_code: int = 200
) -> Response:
    return page(
        request,
        admin,
        "admin/mcp_servers/new.html",
        section=SECTION,
        status_code=status_code,
        form=shown,
        errors=FieldErrors(errors),
        summary=summary(errors),
    )


@router.get("/mcp-servers/new")
async def new_server(request: Request, admin: AdminPage) -> Response:
    return _new_page(request, admin, NewServerForm(), {})


def _connected_message(name: str, state: str, reason: str | None) -> tuple[str, FlashKind]:
    if state == "connected":
        return f"Added {name}: connected.", "success"
    if state == "connecting":
        return f"Added {name}. It is still connecting; this page shows its state.", "info"
    why = reason or "no reason given"
    return f"Added {name}, but it is not connected ({state}: {why}). Heimdall keeps retrying.", "warning"


@router.post("/mcp-servers/new")
async def add_server(request: Request, form: AdminFormDep) -> Response:
    shown = NewServerForm.read(form)
    try:
        body = new_server_body(form, shown)
        result = await mcp_clients.create_client(body, request, gateway_of(request))
    except FormProblems as exc:
        errors = exc.errors
    except GatewayError as exc:
        errors = field_errors(exc)
    else:
        if result["status"] == "pending_oauth":
            message = f"{shown.name} is not saved yet: sign in to finish adding it."
            return redirect(request, f"/mcp-servers/pending/{result['oauth_config_id']}", message, "info")
        message, kind = _connected_message(shown.name, result["state"], result.get("state_reason"))
        return redirect(request, f"/mcp-servers/{result['mcp_client_id']}", message, kind)
    return _new_page(request, form.admin, shown, errors, status_code=400)


# --- one server --------------------------------------------------------------------------------


@router.get("/mcp-servers/{client_id}")
async def show_server(client_id: str, request: Request, admin: AdminPage) -> Response:
    view = await _view(request, client_id)
    if view is None:
        return _not_found(request, admin)
    statuses = await _oauth_statuses(request, [view])
    config = view.config
    verification = None
    if view.state == "pending_verification":
        verification = await mcp_logins.pending_verification_of(gateway_of(request), client_id)
    return page(
        request,
        admin,
        "admin/mcp_servers/show.html",
        section=SECTION,
        view=view,
        config=config,
        client_id=client_id,
        state=server_state(view, statuses.get(_oauth_status_key(view) or "")),
        connection_label=CONNECTION_LABELS.get(config["connection_type"], config["connection_type"]),
        auth_label=AUTH_LABELS.get(config.get("auth_type") or "none", config.get("auth_type")),
        target=target_of(config),
        headers=masked(config.get("headers")),
        envs=masked((config.get("stdio_config") or {}).get("envs")),
        oauth=config.get("oauth_config") or {},
        tools=tool_rows(view),
        allowed=allowed_summary(list(config.get("tools_to_execute") or [])),
        auto=allowed_summary(list(config.get("tools_to_auto_execute") or [])),
        verification=verification,
    )


def _edit_page(
    request: Request,
    admin: AdminSession,
    view: MCPClientView,
    shown: EditServerForm,
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    return page(
        request,
        admin,
        "admin/mcp_servers/edit.html",
        section=SECTION,
        status_code=status_code,
        view=view,
        config=view.config,
        client_id=view.config["client_id"],
        target=target_of(view.config),
        connection_label=CONNECTION_LABELS.get(view.config["connection_type"], view.config["connection_type"]),
        auth_label=AUTH_LABELS.get(view.config.get("auth_type") or "none", view.config.get("auth_type")),
        tool_names=sorted(tool.name for tool in view.tools),
        form=shown,
        errors=FieldErrors(errors),
        summary=summary(errors),
    )


@router.get("/mcp-servers/{client_id}/edit")
async def edit_server(client_id: str, request: Request, admin: AdminPage) -> Response:
    view = await _view(request, client_id)
    if view is None:
        return _not_found(request, admin)
    return _edit_page(request, admin, view, EditServerForm.of(view), {})


@router.post("/mcp-servers/{client_id}/edit")
async def save_server(client_id: str, request: Request, form: AdminFormDep) -> Response:
    view = await _view(request, client_id)
    if view is None:
        return _not_found(request, form.admin)
    shown = EditServerForm.of(view)
    try:
        shown, update = edit_body(form, view)
        saved = await mcp_clients.update_client(client_id, update, request, gateway_of(request))
    except FormProblems as exc:
        errors = exc.errors
    except GatewayError as exc:
        errors = field_errors(exc)
    else:
        return redirect(request, f"/mcp-servers/{client_id}", f"Saved {saved.config['name']}.")
    return _edit_page(request, form.admin, view, shown, errors, status_code=400)


@router.post("/mcp-servers/{client_id}/reconnect")
async def reconnect_server(client_id: str, request: Request, form: AdminFormDep) -> Response:
    view = await _view(request, client_id)
    if view is None:
        return _not_found(request, form.admin)
    name = view.config["name"]
    try:
        result = await mcp_clients.reconnect_client(client_id, request, gateway_of(request))
    except GatewayError as exc:
        return redirect(request, f"/mcp-servers/{client_id}", f"Could not reconnect {name}: {exc.message}", "error")
    if result["state"] == "connected":
        return redirect(request, f"/mcp-servers/{client_id}", f"Reconnected {name}.")
    reason = result.get("state_reason") or "no reason given"
    message = f"{name} is {result['state']} after reconnecting: {reason}"
    return redirect(request, f"/mcp-servers/{client_id}", message, "warning")


@router.post("/mcp-servers/{client_id}/verify")
async def verify_server(client_id: str, request: Request, form: AdminFormDep) -> Response:
    """The test sign-in of a server declared in config.json (it waits in ``pending_verification``)."""
    gateway = gateway_of(request)
    started = await mcp_logins.pending_verification_of(gateway, client_id)
    if started is not None:
        return redirect(request, started.href)
    try:
        result = await mcp_clients.initiate_verification(client_id, gateway)
    except GatewayError as exc:
        return redirect(request, f"/mcp-servers/{client_id}", f"Could not start the sign-in: {exc.message}", "error")
    return redirect(request, f"/mcp-servers/pending/{result['oauth_config_id']}")


@router.get("/mcp-servers/{client_id}/delete")
async def confirm_delete(client_id: str, request: Request, admin: AdminPage) -> Response:
    view = await _view(request, client_id)
    if view is None:
        return _not_found(request, admin)
    return page(
        request,
        admin,
        "admin/mcp_servers/delete.html",
        section=SECTION,
        config=view.config,
        client_id=client_id,
        tool_count=view.tool_count,
    )


@router.post("/mcp-servers/{client_id}/delete")
async def delete_server(client_id: str, request: Request, form: AdminFormDep) -> Response:
    view = await _view(request, client_id)
    if view is None:
        return redirect(request, "/mcp-servers", "That MCP server was already deleted.", "info")
    await mcp_clients.delete_client(client_id, request, gateway_of(request))
    return redirect(request, "/mcp-servers", f"Deleted {view.config['name']}. Its tools are gone from /mcp.")
