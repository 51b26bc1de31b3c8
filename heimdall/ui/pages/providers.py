"""The Providers section: the list, adding a provider, a provider's page (settings, keys, test requests),
the key forms and the delete confirmations.

Every change goes through the management API's handlers (``heimdall.api.providers``), so the UI and
the API accept and refuse exactly the same input. Key values are write-only here too: pages show the
API's masked views (``value_hint`` or the ``env.NAME`` reference) and forms never carry a key back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from heimdall.api import providers as api
from heimdall.api.providers import InvalidProvider, KeyView, ProviderView
from heimdall.config.model import KNOWN_PROVIDERS
from heimdall.errors import GatewayError, NotFound
from heimdall.ui.form_errors import FormErrors
from heimdall.ui.guard import AdminFormDep, AdminPage, gateway_of
from heimdall.ui.pages.provider_forms import (
    API_FORMATS,
    KeyFields,
    ProviderFields,
    add_provider_issues,
    key_create_body,
    key_update_body,
    provider_create_body,
    provider_update_body,
)
from heimdall.ui.pages.provider_probe import ProbeOutcome, send_test_request
from heimdall.ui.render import page, redirect
from heimdall.ui.session import AdminSession

router = APIRouter(include_in_schema=False)

KIND_LABELS = {"openai": "OpenAI-compatible", "anthropic": "Anthropic", "azure": "Azure OpenAI"}
#: Models and aliases listed per provider on the list page; the rest are counted.
GLANCE = 6
#: Where a management-API refusal's ``param`` points on the key form.
KEY_PARAMS = {"name": "key_name", "azure_key_config": "azure_endpoint", "value": "key_value"}


@dataclass(frozen=True)
class ProviderSummary:
    name: str
    kind: str
    keys: int
    glance: list[str]
    more: int


def models_of(view: ProviderView) -> list[str]:
    """Every model name a provider's keys accept: "all models", explicit names, and aliases with their targets."""
    names: dict[str, None] = {}
    if any("*" in key.models for key in view.keys):
        names["all models (*)"] = None
    for key in view.keys:
        names.update((model, None) for model in key.models if model != "*")
        names.update((f"{alias} → {target}", None) for alias, target in key.aliases.items())
    return list(names)


def summarize(view: ProviderView) -> ProviderSummary:
    names = models_of(view)
    return ProviderSummary(
        view.name, KIND_LABELS.get(view.kind, view.kind), len(view.keys), names[:GLANCE], max(0, len(names) - GLANCE)
    )


def testable_models(key: KeyView) -> list[str]:
    """The models a key can be tested with: its explicit models, then its aliases."""
    return [
        *(model for model in key.models if model != "*"),
        *(alias for alias in key.aliases if alias not in key.models),
    ]


def provider_url(name: str, *rest: str) -> str:
    return "/".join(["/providers", quote(name, safe=""), *(quote(part, safe="") for part in rest)])


def _page(request: Request, admin: AdminSession, template: str, status_code: int = 200, **context: Any) -> Response:
    return page(request, admin, f"admin/providers/{template}", section="providers", status_code=status_code, **context)


def _not_found(request: Request, admin: AdminSession, what: str) -> Response:
    return _page(request, admin, "not_found.html", 404, what=what)


async def _provider(request: Request, name: str) -> ProviderView | None:
    try:
        return await api.get_provider(name, gateway_of(request))
    except NotFound:
        return None


def _key(view: ProviderView, key_id: str) -> KeyView | None:
    return next((key for key in view.keys if key.id == key_id), None)


# --- list and add ---------------------------------------------------------------------------------


@router.get("/providers")
async def provider_list(request: Request, admin: AdminPage) -> Response:
    listed = await api.list_providers(gateway_of(request))
    return _page(request, admin, "list.html", providers=[summarize(view) for view in listed.providers])


def _new_page(
    request: Request,
    admin: AdminSession,
    provider: ProviderFields,
    key: KeyFields,
    errors: FormErrors,
    status_code: int = 200,
) -> Response:
    known = [(name, KIND_LABELS[kind]) for name, (kind, _) in KNOWN_PROVIDERS.items()]
    return _page(
        request,
        admin,
        "new.html",
        status_code,
        fields=provider,
        key=key,
        errors=errors,
        api_formats=API_FORMATS,
        known=known,
    )


@router.get("/providers/new")
async def new_provider_form(request: Request, admin: AdminPage) -> Response:
    return _new_page(request, admin, ProviderFields(), KeyFields(), FormErrors())


@router.post("/providers/new")
async def add_provider(request: Request, form: AdminFormDep) -> Response:
    gateway = gateway_of(request)
    provider, key, errors = ProviderFields.from_form(form), KeyFields.from_form(form), FormErrors()
    status_code = 400
    if provider.name and await _provider(request, provider.name) is not None:
        errors.add("name", f"A provider named {provider.name!r} already exists; open it to add keys.")
    body = provider_create_body(provider, key, form.text("key_value"), errors)
    if body is not None and not errors:
        try:
            await api.create_provider(body, gateway)
        except InvalidProvider as exc:
            add_provider_issues(errors, exc, provider.name, key)
        except GatewayError as exc:
            errors.add_gateway_error(exc, KEY_PARAMS)
            status_code = exc.status_code
        else:
            return redirect(request, provider_url(provider.name), f"Provider {provider.name!r} added.")
    return _new_page(request, admin=form.admin, provider=provider, key=key, errors=errors, status_code=status_code)


# --- one provider: settings and test requests ------------------------------------------------------


def _detail(
    request: Request,
    admin: AdminSession,
    view: ProviderView,
    *,
    fields: ProviderFields | None = None,
    errors: FormErrors | None = None,
    probe: ProbeOutcome | None = None,
    status_code: int = 200,
) -> Response:
    return _page(
        request,
        admin,
        "detail.html",
        status_code,
        provider=view,
        kind_label=KIND_LABELS.get(view.kind, view.kind),
        fields=fields or ProviderFields.from_view(view),
        errors=errors or FormErrors(),
        probe=probe,
        api_formats=API_FORMATS,
        testable_models={key.id: testable_models(key) for key in view.keys},
    )


@router.get("/providers/{name}")
async def provider_page(request: Request, name: str, admin: AdminPage) -> Response:
    view = await _provider(request, name)
    if view is None:
        return _not_found(request, admin, f"provider {name!r}")
    return _detail(request, admin, view)


@router.post("/providers/{name}")
async def save_provider_settings(request: Request, name: str, form: AdminFormDep) -> Response:
    view = await _provider(request, name)
    if view is None:
        return _not_found(request, form.admin, f"provider {name!r}")
    fields, errors = ProviderFields.from_form(form), FormErrors()
    fields.name = name
    body = provider_update_body(fields, view.network_config, errors)
    if body is not None:
        try:
            await api.update_provider(name, body, gateway_of(request))
        except InvalidProvider as exc:
            add_provider_issues(errors, exc, name, None)
        except GatewayError as exc:
            errors.add_gateway_error(exc)
        else:
            return redirect(request, provider_url(name), "Settings saved.")
    return _detail(request, form.admin, view, fields=fields, errors=errors, status_code=400)


@router.post("/providers/{name}/test")
async def send_test(request: Request, name: str, form: AdminFormDep) -> Response:
    """Run one small chat completion and show its outcome on the provider's page (no redirect: it is a result)."""
    view = await _provider(request, name)
    if view is None:
        return _not_found(request, form.admin, f"provider {name!r}")
    key_id, model = form.text("key_id"), form.text("model")
    if _key(view, key_id) is None or not model:
        message = "Enter a model name to test." if not model else "That key no longer exists."
        probe = ProbeOutcome(key_id, model, False, 400, 0, None, error=message)
        return _detail(request, form.admin, view, probe=probe, status_code=400)
    probe = await send_test_request(gateway_of(request), name, key_id, model)
    return _detail(request, form.admin, view, probe=probe)


# --- keys ----------------------------------------------------------------------------------------


def _key_page(
    request: Request,
    admin: AdminSession,
    view: ProviderView,
    fields: KeyFields,
    errors: FormErrors,
    key: KeyView | None = None,
    status_code: int = 200,
) -> Response:
    action = provider_url(view.name, "keys", key.id, "edit") if key else provider_url(view.name, "keys", "new")
    return _page(
        request,
        admin,
        "key_form.html",
        status_code,
        provider=view,
        key=key,
        fields=fields,
        errors=errors,
        action=action,
    )


@router.get("/providers/{name}/keys/new")
async def new_key_form(request: Request, name: str, admin: AdminPage) -> Response:
    view = await _provider(request, name)
    if view is None:
        return _not_found(request, admin, f"provider {name!r}")
    return _key_page(request, admin, view, KeyFields(), FormErrors())


@router.post("/providers/{name}/keys/new")
async def add_key(request: Request, name: str, form: AdminFormDep) -> Response:
    view = await _provider(request, name)
    if view is None:
        return _not_found(request, form.admin, f"provider {name!r}")
    fields, errors = KeyFields.from_form(form), FormErrors()
    status_code = 400
    body = key_create_body(fields, form.text("key_value"), errors)
    if body is not None:
        try:
            created = await api.create_key(name, body, gateway_of(request))
        except GatewayError as exc:
            errors.add_gateway_error(exc, KEY_PARAMS)
            status_code = exc.status_code
        else:
            return redirect(request, provider_url(name), f"Key {created.name!r} added.")
    return _key_page(request, form.admin, view, fields, errors, status_code=status_code)


@router.get("/providers/{name}/keys/{key_id}/edit")
async def edit_key_form(request: Request, name: str, key_id: str, admin: AdminPage) -> Response:
    view = await _provider(request, name)
    key = _key(view, key_id) if view else None
    if view is None or key is None:
        return _not_found(request, admin, f"key {key_id!r} of provider {name!r}")
    return _key_page(request, admin, view, KeyFields.from_view(key), FormErrors(), key)


@router.post("/providers/{name}/keys/{key_id}/edit")
async def save_key(request: Request, name: str, key_id: str, form: AdminFormDep) -> Response:
    view = await _provider(request, name)
    key = _key(view, key_id) if view else None
    if view is None or key is None:
        return _not_found(request, form.admin, f"key {key_id!r} of provider {name!r}")
    fields, errors = KeyFields.from_form(form), FormErrors()
    status_code = 400
    body = key_update_body(fields, form.text("key_value"), errors)
    if body is not None:
        try:
            saved = await api.update_key(name, key_id, body, gateway_of(request))
        except GatewayError as exc:
            errors.add_gateway_error(exc, KEY_PARAMS)
            status_code = exc.status_code
        else:
            return redirect(request, provider_url(name), f"Key {saved.name!r} saved.")
    return _key_page(request, form.admin, view, fields, errors, key, status_code=status_code)


# --- deleting ------------------------------------------------------------------------------------


@router.get("/providers/{name}/keys/{key_id}/delete")
async def confirm_key_delete(request: Request, name: str, key_id: str, admin: AdminPage) -> Response:
    view = await _provider(request, name)
    key = _key(view, key_id) if view else None
    if view is None or key is None:
        return _not_found(request, admin, f"key {key_id!r} of provider {name!r}")
    return _page(
        request,
        admin,
        "confirm_delete.html",
        provider=view,
        key=key,
        action=provider_url(name, "keys", key_id, "delete"),
    )


@router.post("/providers/{name}/keys/{key_id}/delete")
async def delete_key(request: Request, name: str, key_id: str, form: AdminFormDep) -> Response:
    try:
        await api.delete_key(name, key_id, gateway_of(request))
    except NotFound:
        return redirect(request, provider_url(name), "That key was already deleted.", "info")
    return redirect(request, provider_url(name), f"Key {key_id!r} deleted.")


@router.get("/providers/{name}/delete")
async def confirm_provider_delete(request: Request, name: str, admin: AdminPage) -> Response:
    view = await _provider(request, name)
    if view is None:
        return _not_found(request, admin, f"provider {name!r}")
    return _page(request, admin, "confirm_delete.html", provider=view, key=None, action=provider_url(name, "delete"))


@router.post("/providers/{name}/delete")
async def delete_provider(request: Request, name: str, form: AdminFormDep) -> Response:
    try:
        await api.delete_provider(name, gateway_of(request))
    except NotFound:
        return redirect(request, "/providers", f"Provider {name!r} was already deleted.", "info")
    return redirect(request, "/providers", f"Provider {name!r} and its keys deleted.")
