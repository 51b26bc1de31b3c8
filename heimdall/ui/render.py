"""Rendering admin pages: the shared layout's context (sections, CSRF token, flash) and redirects.

After a successful form post a page redirects (303) and carries a one-line message to the next page
in a short-lived signed cookie (the "flash"), so nothing about the change lands in the URL.
"""

from __future__ import annotations

import base64
import hmac
import json
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from starlette.responses import RedirectResponse, Response

from heimdall.gateway import Gateway
from heimdall.oauth.server.pages import render
from heimdall.ui.guard import gateway_of
from heimdall.ui.session import AdminSession

FlashKind = Literal["success", "info", "warning", "error"]
FLASH_COOKIE = "heimdall_flash"
#: Admin URLs hold no secrets, and same-origin lets form posts carry a real ``Origin`` header.
ADMIN_REFERRER_POLICY = "same-origin"
_MAX_FLASH = 600


@dataclass(frozen=True)
class Section:
    key: str
    href: str
    label: str


SECTIONS = (
    Section("overview", "/", "Overview"),
    Section("providers", "/providers", "Providers"),
    Section("virtual_keys", "/virtual-keys", "Virtual keys"),
    Section("mcp_servers", "/mcp-servers", "MCP servers"),
    Section("connected_services", "/connected-services", "Connected services"),
    Section("logs", "/logs", "Logs"),
)


@dataclass(frozen=True)
class Flash:
    message: str
    kind: FlashKind = "success"


def _flash_signature(gateway: Gateway, payload: str) -> str:
    return gateway.box.lookup_hash(f"admin-flash:{payload}")


def _read_flash(request: Request, gateway: Gateway) -> Flash | None:
    cookie = request.cookies.get(FLASH_COOKIE)
    if not cookie or "." not in cookie or len(cookie) > 2 * _MAX_FLASH:
        return None
    payload, signature = cookie.rsplit(".", 1)
    if not hmac.compare_digest(_flash_signature(gateway, payload), signature):
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return Flash(str(body["m"]), body["k"] if body["k"] in ("success", "info", "warning", "error") else "info")
    except (ValueError, KeyError, TypeError):
        return None


def page(
    request: Request,
    admin: AdminSession,
    template: str,
    *,
    section: str,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """Render an admin page in the shared layout (``admin/layout.html``)."""
    gateway = gateway_of(request)
    flash = _read_flash(request, gateway)
    response = render(
        template,
        status_code,
        sections=SECTIONS,
        section=section,
        csrf_token=admin.csrf_token,
        flash=flash,
        **context,
    )
    response.headers["Referrer-Policy"] = ADMIN_REFERRER_POLICY
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def redirect(request: Request, url: str, message: str | None = None, kind: FlashKind = "success") -> Response:
    """303 to ``url`` (a path of this site), showing ``message`` once on the page it lands on."""
    response = RedirectResponse(url, status_code=303)
    if message:
        gateway = gateway_of(request)
        body = json.dumps({"m": message[:_MAX_FLASH], "k": kind}, separators=(",", ":")).encode()
        payload = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
        response.set_cookie(
            FLASH_COOKIE,
            f"{payload}.{_flash_signature(gateway, payload)}",
            max_age=60,
            path="/",
            secure=gateway.settings.base_url.startswith("https://"),
            httponly=True,
            samesite="strict",
        )
    return response
