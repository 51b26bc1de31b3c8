"""The two consent pages (identity, services) built from a loaded, browser-checked flow."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.responses import RedirectResponse, Response

from heimdall.gateway import Gateway
from heimdall.oauth.per_user import connections
from heimdall.oauth.server import clients, consent, pages, urls
from heimdall.oauth.server.bearer import virtual_key_by_id
from heimdall.store.per_user_models import ASPendingFlowRow

SCOPE_DESCRIPTIONS = {
    "mcp:read": "see the tools, prompts and resources you may use",
    "mcp:write": "use tools, prompts and resources on your behalf",
}


def _cimd_host(client: clients.Client | None) -> str | None:
    if client is None or not client.is_metadata_document:
        return None
    return urlsplit(client.client_id).netloc


async def identity_page(gateway: Gateway, flow: ASPendingFlowRow, browser_secret: str, error: str | None) -> Response:
    """``GET /oauth/consent``: who is asking, where the code goes, what for; then the identity options."""
    async with gateway.store.read() as session:
        client = await clients.stored_client(session, flow.client_id)
    config = gateway.snapshot.per_user_oauth
    oidc = None
    if config.oidc is not None:
        oidc = {"name": config.oidc.display_name, "url": f"{urls.OIDC_START_PATH}?{urlencode({'flow_id': flow.id})}"}
    return pages.render(
        "oauth/consent_identity.html",
        client_name=client.display_name if client else "An application",
        cimd_host=_cimd_host(client),
        redirect_host=urls.host_of(flow.redirect_uri),
        loopback=urls.is_loopback_url(flow.redirect_uri),
        scopes=[{"name": s, "description": SCOPE_DESCRIPTIONS.get(s, "")} for s in flow.scope.split()],
        error=error
        if error in consent.PAGE_MESSAGES
        else ("Something went wrong. Please try again." if error else None),
        expires_minutes=max(1, config.flow_ttl // 60),
        flow_id=flow.id,
        csrf_token=consent.csrf_token(gateway.box, flow.id, browser_secret),
        vk_action=urls.CONSENT_VK_PATH,
        user_id_action=urls.CONSENT_USER_ID_PATH,
        skip_action=urls.CONSENT_SKIP_PATH,
        oidc=oidc,
        allow_user_id=config.allow_self_declared_user_ids,
        show_skip=not gateway.snapshot.client.enforce_auth_on_inference,
    )


def _identity_label(gateway: Gateway, flow: ASPendingFlowRow) -> str | None:
    if flow.identity_kind == "vk" and flow.identity:
        vk = virtual_key_by_id(gateway, flow.identity)
        return f"Virtual Key {vk.name}" if vk else "your Virtual Key"
    if flow.identity_kind == "user" and flow.identity:
        return f"User {flow.identity}"
    return None


async def _services(gateway: Gateway, flow: ASPendingFlowRow) -> list[dict[str, Any]]:
    """The per-user services for the chosen identity, each with a fresh Connect link unless connected.

    After Skip there is no identity yet: the services are listed, to be connected on first use.
    """
    kind, identity = flow.identity_kind, flow.identity
    vk = virtual_key_by_id(gateway, identity) if kind == "vk" and identity else None
    async with gateway.store.transaction() as session:
        views = await connections.services_for(gateway, session, identity_kind=kind, identity=identity, vk=vk)
        services: list[dict[str, Any]] = []
        for view in views:
            connect_url = None
            if kind and identity and (view.needs_reauth or not view.connected):
                connect_url = await connections.connect_link(
                    gateway,
                    session,
                    mcp_client_id=view.mcp_client_id,
                    identity_kind=kind,
                    identity=identity,
                    flow_id=flow.id,
                )
            services.append(
                {
                    "name": view.name,
                    "connected": view.connected,
                    "needs_reauth": view.needs_reauth,
                    "connect_url": connect_url,
                }
            )
    return services


async def services_page(gateway: Gateway, flow: ASPendingFlowRow, browser_secret: str) -> Response:
    """``GET /oauth/consent/mcps``: the per-user services this identity may use, and Finish."""
    if not flow.identity_chosen:
        return pages.protect(RedirectResponse(consent.identity_page(flow.id, consent.CHOOSE_FIRST), status_code=302))
    async with gateway.store.read() as session:
        client = await clients.stored_client(session, flow.client_id)
    return pages.render(
        "oauth/consent_services.html",
        client_name=client.display_name if client else "An application",
        identity_label=_identity_label(gateway, flow),
        skipped=flow.identity_kind is None,
        services=await _services(gateway, flow),
        flow_id=flow.id,
        csrf_token=consent.csrf_token(gateway.box, flow.id, browser_secret),
        submit_action=urls.CONSENT_SUBMIT_PATH,
        change_identity_url=consent.identity_page(flow.id),
    )
