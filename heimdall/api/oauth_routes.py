"""``/api/oauth``: the shared upstream OAuth callback (public) and server-level OAuth config management (admin).

The callback is shared by every upstream login. It asks a list of completion handlers, in order,
whether the ``state`` is theirs (``callback_handlers(app)``): server-level logins are handled here;
the per-user flow inserts its handler at the front. Pages it renders are HTML-escaped, cannot be
framed, are not cached, and tell the opener window the outcome through ``postMessage``.
"""

from __future__ import annotations

import html
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from heimdall.api.deps import AdminDep, GatewayDep, get_gateway
from heimdall.api.errors import envelope_response
from heimdall.errors import BadRequest, NotFound
from heimdall.gateway import Gateway
from heimdall.oauth.upstream import records
from heimdall.oauth.upstream.flow import (
    AuthorizationFailed,
    OAuthConfigNotFound,
    UnknownState,
    complete_authorization,
    fail_authorization,
)
from heimdall.oauth.upstream.revoke import revoke_stored_token
from heimdall.store.mcp_models import OAuthConfigRow, OAuthTokenRow

log = logging.getLogger(__name__)

SUCCESS_MESSAGE = "OAuth authorization successful! You can close this window."


@dataclass(frozen=True, slots=True)
class CallbackParams:
    """The authorization response (RFC 6749 §4.1.2 and §4.1.2.1, RFC 9207 ``iss``)."""

    state: str | None
    code: str | None
    error: str | None
    error_description: str | None
    iss: str | None


class CallbackHandler(Protocol):
    async def __call__(self, request: Request, gateway: Gateway, params: CallbackParams) -> Response | None:
        """Answer the callback if ``params.state`` belongs to this handler's logins; else return None."""
        ...


# --- pages ------------------------------------------------------------------------------------


def _security_headers(nonce: str | None = None) -> dict[str, str]:
    scripts = f"script-src 'nonce-{nonce}'; " if nonce else ""
    return {
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": (
            f"default-src 'none'; {scripts}style-src 'unsafe-inline'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        ),
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


def _script_json(value: Any) -> str:
    """JSON safe inside an inline <script>: ``ensure_ascii`` escapes U+2028/2029, and no ``</script>`` can occur."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page(title: str, body_html: str, message: dict[str, Any], status_code: int) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    content = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:3rem auto;max-width:36rem;text-align:center}</style>"
        f"</head><body>{body_html}"
        f"<script nonce='{nonce}'>if (window.opener) {{ window.opener.postMessage({_script_json(message)}, "
        "location.origin); } window.close();</script></body></html>"
    )
    return HTMLResponse(content, status_code=status_code, headers=_security_headers(nonce))


def success_page(message: str = SUCCESS_MESSAGE) -> HTMLResponse:
    return _page("Authorization Successful", f"<h1>{html.escape(message)}</h1>", {"type": "oauth_success"}, 200)


def failure_page(error: str, description: str | None = None, *, status_code: int = 400) -> HTMLResponse:
    detail = f"<p>{html.escape(error)}</p>"
    if description:
        detail += f"<p>{html.escape(description)}</p>"
    message = {"type": "oauth_failed", "error": error}
    return _page("Authorization Failed", f"<h1>Authorization Failed</h1>{detail}", message, status_code)


# --- handlers ---------------------------------------------------------------------------------


async def server_login_handler(request: Request, gateway: Gateway, params: CallbackParams) -> Response | None:
    """Server-level (and per-user verification) logins kept on ``oauth_configs``."""
    if params.state is None:
        return None
    if params.error is not None:
        if not await fail_authorization(
            gateway.store, state=params.state, error=params.error, description=params.error_description
        ):
            return None
        return failure_page(params.error, params.error_description)
    if params.code is None:
        return None
    try:
        await complete_authorization(gateway.store, state=params.state, code=params.code, iss=params.iss)
    except UnknownState:
        return None
    except AuthorizationFailed as exc:
        return failure_page(exc.message, status_code=exc.status_code)
    return success_page()


def callback_handlers(app: FastAPI) -> list[CallbackHandler]:
    """The app's callback handlers, tried in order (created with the server-level handler on first use).

    A per-user flow registers with ``callback_handlers(app).insert(0, handler)``.
    """
    handlers: list[CallbackHandler] | None = getattr(app.state, "oauth_callback_handlers", None)
    if handlers is None:
        handlers = [server_login_handler]
        app.state.oauth_callback_handlers = handlers
    return handlers


# --- routes -----------------------------------------------------------------------------------

public = APIRouter(prefix="/api/oauth", tags=["oauth"])
admin = APIRouter(prefix="/api/oauth/config", tags=["oauth"], dependencies=[AdminDep])


def _first(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value if value else None


@public.get(
    "/callback",
    summary="Upstream OAuth redirect target (shared by every upstream login)",
    response_class=HTMLResponse,
)
async def oauth_callback(request: Request) -> Response:
    params = CallbackParams(
        state=_first(request, "state"),
        code=_first(request, "code"),
        error=_first(request, "error"),
        error_description=_first(request, "error_description"),
        iss=_first(request, "iss"),
    )
    if params.error is None and (params.state is None or params.code is None):
        response = envelope_response(BadRequest("Missing required parameters: state and code"))
        response.headers.update(_security_headers())
        return response
    gateway = get_gateway(request)
    for handler in callback_handlers(request.app):
        answer = await handler(request, gateway, params)
        if answer is not None:
            return answer
    if params.error is not None:
        return failure_page(params.error, params.error_description)
    return failure_page("Invalid or expired authorization state. Please start the authorization again.")


def _iso(value: Any) -> str | None:
    moment = records.as_utc(value)
    return moment.isoformat() if moment is not None else None


@admin.get("/{oauth_config_id}/status", summary="Status of an upstream OAuth configuration (poll after a login)")
async def oauth_config_status(oauth_config_id: str, gateway: GatewayDep) -> dict[str, Any]:
    async with gateway.store.read() as session:
        config = await session.get(OAuthConfigRow, oauth_config_id)
        if config is None:
            raise NotFound("OAuth config not found")
        token = await session.get(OAuthTokenRow, config.token_id) if config.token_id else None
    body: dict[str, Any] = {
        "id": config.id,
        "status": config.status,
        "created_at": _iso(config.created_at),
        "expires_at": _iso(config.expires_at),
    }
    if config.status_reason:
        body["status_reason"] = config.status_reason
    if token is not None:
        body["token_id"] = token.id
        body["token_expires_at"] = _iso(token.expires_at)
        body["token_scopes"] = list(token.scopes or [])
    return body


@admin.delete("/{oauth_config_id}", summary="Revoke the stored server-level token (RFC 7009 upstream when offered)")
async def revoke_oauth_config(oauth_config_id: str, gateway: GatewayDep) -> dict[str, str]:
    try:
        await revoke_stored_token(gateway.store, oauth_config_id)
    except OAuthConfigNotFound:
        raise NotFound("OAuth config not found") from None
    return {"message": "OAuth token revoked successfully"}


router = APIRouter()
router.include_router(public)
router.include_router(admin)
