"""The admin's OAuth sign-ins for MCP servers, as the web UI follows them.

A sign-in is an ``oauth_configs`` row (``heimdall.oauth.upstream.flow``). Adding an ``oauth`` or
``per_user_oauth`` server leaves one that holds the server, encrypted, until the login completed;
nothing is saved as a server before that::

    /mcp-servers/new ──▶ POST /api/mcp/client logic ──▶ pending sign-in (kind "setup")
    /mcp-servers/pending/<id>/authorize ──▶ a fresh state and PKCE verifier ──▶ upstream login (popup)
        ──▶ /api/oauth/callback (the row becomes "authorized")
    /mcp-servers/pending/<id>/status (polled) ──▶ POST …/finish ──▶ complete-oauth logic ──▶ the server's page

The same page signs a shared (``oauth``) server in again after its token failed for good
(kind "reauth": finishing reconnects it). Each attempt's ``state`` is single-use and lives 15
minutes, so the page never holds an authorize URL: its sign-in link arms a new attempt when opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.crypto import CryptoError, SecretBox
from heimdall.gateway import Gateway
from heimdall.oauth.upstream import flow, records
from heimdall.oauth.upstream.revoke import revoke_stored_token
from heimdall.store import mcp_repos
from heimdall.store.mcp_models import MCPClientRow, OAuthConfigRow

LoginKind = Literal["setup", "reauth", "done"]
Progress = Literal["waiting", "authorized", "failed", "expired", "done"]


@dataclass(frozen=True, slots=True)
class Login:
    """One sign-in and the server it is for."""

    oauth_config_id: str
    #: setup: the server is saved once the login completed; reauth: a shared server signs in again;
    #: done: the server was saved (nothing is left to do here).
    kind: LoginKind
    name: str
    auth_type: str
    server_url: str
    mcp_client_id: str | None
    status: str
    reason: str | None
    expires_at: datetime | None

    @property
    def progress(self) -> Progress:
        if self.kind == "done":
            return "done"
        if self.status == "authorized":
            return "authorized"
        if self.status == "failed":
            return "failed"
        if self.status == "expired" or (self.status == "pending" and self._expired()):
            return "expired"
        return "waiting"

    def _expired(self) -> bool:
        expires_at = records.as_utc(self.expires_at)
        return expires_at is not None and expires_at <= records.utcnow()

    @property
    def message(self) -> str:
        """What the sign-in page says about the login's progress."""
        match self.progress:
            case "done":
                return f"{self.name} is set up."
            case "authorized":
                return f"Signed in to {self.name}. Finishing the setup…"
            case "failed":
                reason = self.reason or "the upstream refused the sign-in"
                if reason.startswith("access_denied"):
                    return f"The sign-in to {self.name} was denied. Nothing was saved; you can try again."
                return f"The sign-in to {self.name} did not succeed: {reason}"
            case "expired":
                return "The sign-in took too long (a sign-in stays valid for 15 minutes). Please try again."
            case _:
                return f"Waiting for you to sign in to {self.name}…"

    @property
    def href(self) -> str:
        return f"/mcp-servers/pending/{self.oauth_config_id}"


def _pending_client(box: SecretBox, row: OAuthConfigRow) -> dict[str, Any] | None:
    try:
        return records.pending_client(box, row)
    except (CryptoError, ValueError):
        return None


async def _client_of(session: AsyncSession, oauth_config_id: str) -> MCPClientRow | None:
    query = select(MCPClientRow).where(MCPClientRow.oauth_config_id == oauth_config_id).limit(1)
    return (await session.scalars(query)).first()


def _login(row: OAuthConfigRow, kind: LoginKind, name: str, auth_type: str, client_id: str | None) -> Login:
    return Login(
        oauth_config_id=row.id,
        kind=kind,
        name=name,
        auth_type=auth_type,
        server_url=row.server_url,
        mcp_client_id=client_id,
        status=row.status,
        reason=row.status_reason,
        expires_at=row.expires_at,
    )


def _setup(row: OAuthConfigRow, pending: dict[str, Any]) -> Login:
    client_id = pending.get("client_id")
    return _login(
        row,
        "setup",
        str(pending.get("name") or "this server"),
        str(pending.get("auth_type") or "oauth"),
        client_id if isinstance(client_id, str) else None,
    )


async def find_login(gateway: Gateway, oauth_config_id: str) -> Login | None:
    """The sign-in with this id, or None when there is none (or it is nobody's: a discarded setup)."""
    async with gateway.store.read() as session:
        row = await session.get(OAuthConfigRow, oauth_config_id)
        if row is None:
            return None
        pending = _pending_client(gateway.box, row)
        if pending is not None:
            return _setup(row, pending)
        client = await _client_of(session, oauth_config_id)
    if client is None:
        return None
    kind: LoginKind = "reauth" if client.auth_type == "oauth" else "done"
    return _login(row, kind, client.name, client.auth_type, client.id)


async def pending_setups(gateway: Gateway) -> list[Login]:
    """Servers waiting for their first sign-in (newest first); verifications of saved servers are left out."""
    async with gateway.store.read() as session:
        query = (
            select(OAuthConfigRow)
            .where(OAuthConfigRow.pending_client_encrypted.is_not(None))
            .order_by(OAuthConfigRow.created_at.desc())
        )
        rows = list((await session.scalars(query)).all())
        saved = {client_id for client_id in (await session.scalars(select(MCPClientRow.id))).all()}
    logins = []
    for row in rows:
        pending = _pending_client(gateway.box, row)
        if pending is None:
            continue
        login = _setup(row, pending)
        if login.mcp_client_id not in saved:
            logins.append(login)
    return logins


async def pending_verification_of(gateway: Gateway, mcp_client_id: str) -> Login | None:
    """The newest unfinished verification sign-in of a saved server, if one was started."""
    async with gateway.store.read() as session:
        query = (
            select(OAuthConfigRow)
            .where(OAuthConfigRow.pending_client_encrypted.is_not(None))
            .order_by(OAuthConfigRow.created_at.desc())
        )
        rows = list((await session.scalars(query)).all())
    for row in rows:
        pending = _pending_client(gateway.box, row)
        if pending is not None and pending.get("client_id") == mcp_client_id:
            return _setup(row, pending)
    return None


async def oauth_statuses(gateway: Gateway, oauth_config_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """``status`` and ``status_reason`` of these OAuth configurations (to show ``needs_reauth``)."""
    if not oauth_config_ids:
        return {}
    async with gateway.store.read() as session:
        query = select(OAuthConfigRow.id, OAuthConfigRow.status, OAuthConfigRow.status_reason).where(
            OAuthConfigRow.id.in_(oauth_config_ids)
        )
        return {row_id: (status, reason) for row_id, status, reason in (await session.execute(query)).all()}


async def arm(gateway: Gateway, login: Login) -> str:
    """A new attempt (fresh ``state`` and PKCE verifier, 15 minutes); returns the upstream authorize URL.

    Raises:
        OAuthConfigNotFound: the sign-in was removed meanwhile.
    """
    pending = await flow.begin_authorization(gateway.store, login.oauth_config_id, base_url=gateway.settings.base_url)
    return pending["authorize_url"]


async def discard(gateway: Gateway, login: Login) -> None:
    """Forget a server that waits for its first sign-in; a token its login already got is revoked."""
    try:
        await revoke_stored_token(gateway.store, login.oauth_config_id)
    except flow.OAuthConfigNotFound:
        return
    async with gateway.store.transaction() as session:
        row = await session.get(OAuthConfigRow, login.oauth_config_id, with_for_update=True)
        if row is None:
            return
        records.set_pending_client(gateway.box, row, None)
        if not await mcp_repos.uses_oauth_config(session, row.id):
            await session.delete(row)
