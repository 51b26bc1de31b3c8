"""Helpers for the OIDC sign-in tests: a gateway wired to the fake provider, and a browser that signs in."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import select

from heimdall.store.oidc_models import OIDCLoginAttemptRow
from heimdall.store.per_user_models import ASPendingFlowRow
from tests.oauth_server.helpers import ASClient, gateway_config, open_store, query_of
from tests.support.fake_oidc import FakeOIDCProvider
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.servers import free_port

ALICE = "alice@example.com"
DISPLAY_NAME = "Example SSO"
CALLBACK_PATH = "/oauth/consent/oidc/callback"
SIGN_IN_LINK = re.compile(r'<a class="btn" href="([^"]+)">Sign in with ([^<]+)</a>')
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
}


def assert_protected(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code)
    assert "frame-ancestors 'none'" in response.headers.get("content-security-policy", "")


def oidc_section(idp: FakeOIDCProvider, **overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {"issuer": idp.issuer, "client_id": idp.client_id, "display_name": DISPLAY_NAME}
    if idp.client_secret is not None:
        section["client_secret"] = idp.client_secret
    section.update(overrides)
    return section


def oidc_gateway_config(idp: FakeOIDCProvider | None, **oidc: Any) -> dict[str, Any]:
    """One per-user MCP client (pending verification: enough for the consent pages) and the OIDC login."""
    per_user: dict[str, Any] = {"oidc": oidc_section(idp, **oidc)} if idp is not None else {}
    return gateway_config(per_user_oauth=per_user)


def reserve_port(idp: FakeOIDCProvider | None) -> int:
    """A port for the gateway, whose callback URL is registered at the provider."""
    port = free_port()
    if idp is not None:
        idp.redirect_uris.add(f"http://127.0.0.1:{port}{CALLBACK_PATH}")
    return port


def start_oidc_gateway(
    app_dir: Path, idp: FakeOIDCProvider | None, db_url: str | None = None, **oidc: Any
) -> RunningGateway:
    port = reserve_port(idp)
    return start_gateway(app_dir, config=oidc_gateway_config(idp, **oidc), db_url=db_url, port=port)


class Browser(ASClient):
    """A browser (cookies kept) that goes through the consent pages and the provider."""

    def __enter__(self) -> Browser:
        return self

    def new_flow(self) -> str:
        return self.start(self.register()).flow_id

    def sign_in_url(self, flow_id: str) -> str:
        page = self.identity_page(flow_id)
        assert page.status_code == 200, page.text
        match = SIGN_IN_LINK.search(page.text)
        assert match, page.text
        assert match.group(2) == DISPLAY_NAME
        return match.group(1).replace("&amp;", "&")

    def oidc_start(self, flow_id: str) -> httpx.Response:
        return self.http.get("/oauth/consent/oidc/start", params={"flow_id": flow_id})

    def to_provider(self, flow_id: str) -> str:
        """Follow the consent page's sign-in link; returns the provider's authorization URL."""
        response = self.http.get(self.sign_in_url(flow_id))
        assert response.status_code == 302, response.text
        assert_protected(response)
        location: str = response.headers["location"]
        return location

    def approve(self, authorize_url: str, user: str = ALICE) -> str:
        """Approve at the provider as ``user``; returns the callback URL it redirects to."""
        response = self.http.get(f"{authorize_url}&{urlencode({'user': user})}")
        assert response.status_code == 302, response.text
        location: str = response.headers["location"]
        return location

    def callback(self, url: str) -> httpx.Response:
        return self.http.get(url)

    def sign_in(self, flow_id: str, user: str = ALICE) -> httpx.Response:
        return self.callback(self.approve(self.to_provider(flow_id), user))


def flow_row(gateway: RunningGateway, flow_id: str, db_url: str | None = None) -> ASPendingFlowRow | None:
    async def read() -> ASPendingFlowRow | None:
        store = open_store(gateway.app_dir, db_url)
        try:
            async with store.read() as session:
                return await session.get(ASPendingFlowRow, flow_id)
        finally:
            await store.engine.dispose()

    return asyncio.run(read())


def attempts_for(gateway: RunningGateway, flow_id: str, db_url: str | None = None) -> list[OIDCLoginAttemptRow]:
    async def read() -> list[OIDCLoginAttemptRow]:
        store = open_store(gateway.app_dir, db_url)
        try:
            async with store.read() as session:
                query = select(OIDCLoginAttemptRow).where(OIDCLoginAttemptRow.flow_id == flow_id)
                return list((await session.scalars(query)).all())
        finally:
            await store.engine.dispose()

    return asyncio.run(read())


__all__ = [
    "ALICE",
    "Browser",
    "assert_protected",
    "attempts_for",
    "flow_row",
    "oidc_gateway_config",
    "query_of",
    "reserve_port",
    "start_oidc_gateway",
]
