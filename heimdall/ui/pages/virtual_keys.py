"""The Virtual keys section: the list, creating a key (its value shown once), editing, turning a key
on and off, and deleting it.

Changes go through the management API's handlers (``heimdall.api.virtual_keys``). A new key's value
exists only in the response to the form that created it: that page is rendered directly (201, not a
redirect), so the value never passes through a cookie, a URL or a later page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from heimdall.api import virtual_keys as api
from heimdall.api.virtual_keys import VirtualKeyUpdate, VirtualKeyView
from heimdall.config.model import VirtualKeyConfig
from heimdall.errors import GatewayError, NotFound
from heimdall.store import mcp_repos, repos
from heimdall.ui.form_errors import FormErrors
from heimdall.ui.guard import AdminFormDep, AdminPage, gateway_of
from heimdall.ui.pages.vk_forms import ClientRef, VKFields
from heimdall.ui.render import page, redirect
from heimdall.ui.session import AdminSession

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Choices:
    """What a virtual key can be given access to: the configured providers and MCP clients."""

    providers: list[str]
    clients: list[ClientRef]

    def client_name(self, entry: dict[str, Any]) -> str:
        by_id = {client.id: client.name for client in self.clients}
        return by_id.get(
            str(entry.get("mcp_client_id")), str(entry.get("mcp_client_name") or entry.get("mcp_client_id"))
        )


@dataclass(frozen=True)
class VKSummary:
    view: VirtualKeyView
    providers: list[str]
    mcp: list[str]


def _allow_text(values: list[str], everything: str, nothing: str) -> str:
    if "*" in values:
        return everything
    return ", ".join(values) if values else nothing


def summarize(view: VirtualKeyView, choices: Choices) -> VKSummary:
    providers = [
        f"{pc.get('provider')}: {_allow_text(list(pc.get('allowed_models') or []), 'all models', 'no models')}"
        for pc in view.provider_configs
    ]
    mcp = [
        f"{choices.client_name(e)}: {_allow_text(list(e.get('tools_to_execute') or []), 'all tools', 'no tools')}"
        for e in view.mcp_configs
    ]
    return VKSummary(view, providers, mcp)


def vk_url(vk_id: str, *rest: str) -> str:
    return "/".join(["/virtual-keys", quote(vk_id, safe=""), *rest])


async def _choices(request: Request) -> Choices:
    async with gateway_of(request).store.read() as session:
        providers = [row.name for row in await repos.list_providers(session)]
        clients = [ClientRef(row.id, row.name) for row in await mcp_repos.list_clients(session)]
    return Choices(providers, clients)


async def _virtual_key(request: Request, vk_id: str) -> VirtualKeyView | None:
    try:
        return await api.get_virtual_key(vk_id, gateway_of(request))
    except NotFound:
        return None


def _page(request: Request, admin: AdminSession, template: str, status_code: int = 200, **context: Any) -> Response:
    return page(
        request, admin, f"admin/virtual_keys/{template}", section="virtual_keys", status_code=status_code, **context
    )


def _not_found(request: Request, admin: AdminSession, vk_id: str) -> Response:
    return _page(request, admin, "not_found.html", 404, vk_id=vk_id)


def _form_page(
    request: Request,
    admin: AdminSession,
    fields: VKFields,
    errors: FormErrors,
    view: VirtualKeyView | None = None,
    status_code: int = 200,
) -> Response:
    action = vk_url(view.id) if view else "/virtual-keys/new"
    return _page(request, admin, "form.html", status_code, fields=fields, errors=errors, vk=view, action=action)


def _add_refusal(errors: FormErrors, exc: GatewayError) -> int:
    """A management-API refusal: name clashes point at the name field."""
    errors.add("name" if exc.status_code == 409 else None, exc.message)
    return exc.status_code


# --- list and create ----------------------------------------------------------------------------


@router.get("/virtual-keys")
async def virtual_key_list(request: Request, admin: AdminPage) -> Response:
    listed = await api.list_virtual_keys(gateway_of(request))
    choices = await _choices(request)
    return _page(request, admin, "list.html", keys=[summarize(view, choices) for view in listed.virtual_keys])


@router.get("/virtual-keys/new")
async def new_virtual_key_form(request: Request, admin: AdminPage) -> Response:
    choices = await _choices(request)
    return _form_page(request, admin, VKFields.blank(choices.providers, choices.clients), FormErrors())


@router.post("/virtual-keys/new")
async def create_virtual_key(request: Request, form: AdminFormDep) -> Response:
    choices = await _choices(request)
    fields, errors = VKFields.from_form(form, choices.providers, choices.clients), FormErrors()
    status_code = 400
    if not fields.name:
        errors.add("name", "Enter a name for the key, e.g. the application that will use it.")
    body: VirtualKeyConfig | None = None
    try:
        body = VirtualKeyConfig.model_validate(fields.body())
    except ValidationError as exc:
        errors.add_validation(exc, fields.field_for)
    if body is not None and not errors:
        try:
            created = await api.create_virtual_key(body, gateway_of(request))
        except GatewayError as exc:
            status_code = _add_refusal(errors, exc)
        else:
            summary = summarize(api.VirtualKeyView(**created.model_dump(exclude={"value"})), choices)
            return _page(request, form.admin, "created.html", 201, value=created.value, key=summary)
    return _form_page(request, form.admin, fields, errors, status_code=status_code)


# --- edit, on/off, delete -----------------------------------------------------------------------


@router.get("/virtual-keys/{vk_id}")
async def edit_virtual_key_form(request: Request, vk_id: str, admin: AdminPage) -> Response:
    view = await _virtual_key(request, vk_id)
    if view is None:
        return _not_found(request, admin, vk_id)
    choices = await _choices(request)
    return _form_page(request, admin, VKFields.from_view(view, choices.providers, choices.clients), FormErrors(), view)


@router.post("/virtual-keys/{vk_id}")
async def save_virtual_key(request: Request, vk_id: str, form: AdminFormDep) -> Response:
    view = await _virtual_key(request, vk_id)
    if view is None:
        return _not_found(request, form.admin, vk_id)
    choices = await _choices(request)
    fields, errors = VKFields.from_form(form, choices.providers, choices.clients, view), FormErrors()
    status_code = 400
    if not fields.name:
        errors.add("name", "Enter a name for the key.")
    body: VirtualKeyUpdate | None = None
    try:
        body = VirtualKeyUpdate.model_validate(fields.body())
    except ValidationError as exc:
        errors.add_validation(exc, fields.field_for)
    if body is not None and not errors:
        try:
            saved = await api.update_virtual_key(vk_id, body, gateway_of(request))
        except GatewayError as exc:
            status_code = _add_refusal(errors, exc)
        else:
            return redirect(request, "/virtual-keys", f"Virtual key {saved.name!r} saved.")
    return _form_page(request, form.admin, fields, errors, view, status_code=status_code)


@router.post("/virtual-keys/{vk_id}/activation")
async def set_active(request: Request, vk_id: str, form: AdminFormDep) -> Response:
    """Turn a key on (``active=true``) or off; ``back=edit`` returns to its page, else to the list."""
    active = form.text("active") == "true"
    back = vk_url(vk_id) if form.text("back") == "edit" else "/virtual-keys"
    try:
        saved = await api.update_virtual_key(vk_id, VirtualKeyUpdate(is_active=active), gateway_of(request))
    except NotFound:
        return redirect(request, "/virtual-keys", "That virtual key no longer exists.", "warning")
    if active:
        return redirect(request, back, f"Virtual key {saved.name!r} is active again.")
    return redirect(request, back, f"Virtual key {saved.name!r} is inactive: requests with it are refused.", "info")


@router.get("/virtual-keys/{vk_id}/delete")
async def confirm_delete(request: Request, vk_id: str, admin: AdminPage) -> Response:
    view = await _virtual_key(request, vk_id)
    if view is None:
        return _not_found(request, admin, vk_id)
    return _page(request, admin, "confirm_delete.html", vk=view, action=vk_url(vk_id, "delete"))


@router.post("/virtual-keys/{vk_id}/delete")
async def delete_virtual_key(request: Request, vk_id: str, form: AdminFormDep) -> Response:
    view = await _virtual_key(request, vk_id)
    try:
        await api.delete_virtual_key(vk_id, gateway_of(request))
    except NotFound:
        return redirect(request, "/virtual-keys", "That virtual key was already deleted.", "info")
    name = view.name if view else vk_id
    return redirect(request, "/virtual-keys", f"Virtual key {name!r} deleted; requests with it are refused.")
