"""Listing and revoking identities' upstream grants (the admin API and the user's connections page).

A grant is one ``oauth_user_tokens`` row. Listings never include tokens. Revoking sends the refresh
token, then the access token, to the upstream's RFC 7009 endpoint when its metadata named one (RFC
7009 §2.1 lets a refresh token's revocation end the whole grant), then deletes the row. Both happen
under the row's refresh lock, so a refresh running at that moment cannot bring the grant back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.gateway import Gateway
from heimdall.oauth.per_user import tokens
from heimdall.oauth.per_user.identity import Identity, IdentityKind
from heimdall.oauth.per_user.locks import locks_for
from heimdall.oauth.server.bearer import virtual_key_by_id
from heimdall.oauth.upstream import records
from heimdall.oauth.upstream.revoke import revoke_at_upstream
from heimdall.store.mcp_models import MCPClientRow, OAuthConfigRow
from heimdall.store.per_user_models import OAuthUserTokenRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GrantFilter:
    identity_kind: IdentityKind | None = None
    identity: str | None = None
    mcp_client_id: str | None = None


@dataclass(frozen=True, slots=True)
class GrantView:
    id: str
    mcp_client_id: str
    mcp_client_name: str
    identity_kind: str
    identity: str
    vk_name: str | None
    status: str
    status_reason: str | None
    expires_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime | None
    scopes: list[str]

    def as_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            moment = records.as_utc(value)
            return moment.isoformat() if moment is not None else None

        body: dict[str, Any] = {
            "id": self.id,
            "mcp_client_id": self.mcp_client_id,
            "mcp_client_name": self.mcp_client_name,
            "identity_kind": self.identity_kind,
            "identity": self.identity,
            "status": self.status,
            "status_reason": self.status_reason,
            "expires_at": iso(self.expires_at),
            "last_used_at": iso(self.last_used_at),
            "created_at": iso(self.created_at),
            "scopes": self.scopes,
        }
        if self.identity_kind == "vk":
            body["vk_name"] = self.vk_name
        return body


def _conditions(where: GrantFilter) -> list[Any]:
    conditions: list[Any] = []
    if where.identity_kind is not None:
        conditions.append(OAuthUserTokenRow.identity_kind == where.identity_kind)
    if where.identity is not None:
        conditions.append(OAuthUserTokenRow.identity == where.identity)
    if where.mcp_client_id is not None:
        conditions.append(OAuthUserTokenRow.mcp_client_id == where.mcp_client_id)
    return conditions


async def list_grants(
    gateway: Gateway, session: AsyncSession, where: GrantFilter, *, limit: int = 100, offset: int = 0
) -> tuple[list[GrantView], int]:
    """Grants matching ``where`` (by service name, then identity) and how many match in all."""
    conditions = _conditions(where)
    total = await session.scalar(select(func.count()).select_from(OAuthUserTokenRow).where(*conditions))
    query = (
        select(OAuthUserTokenRow, MCPClientRow.name)
        .join(MCPClientRow, MCPClientRow.id == OAuthUserTokenRow.mcp_client_id)
        .where(*conditions)
        .order_by(MCPClientRow.name, OAuthUserTokenRow.identity_kind, OAuthUserTokenRow.identity)
        .limit(limit)
        .offset(offset)
    )
    views: list[GrantView] = []
    for row, client_name in (await session.execute(query)).all():
        vk = virtual_key_by_id(gateway, row.identity) if row.identity_kind == "vk" else None
        views.append(
            GrantView(
                id=row.id,
                mcp_client_id=row.mcp_client_id,
                mcp_client_name=client_name,
                identity_kind=row.identity_kind,
                identity=row.identity,
                vk_name=vk.name if vk is not None else None,
                status=row.status,
                status_reason=row.status_reason,
                expires_at=row.expires_at,
                last_used_at=row.last_used_at,
                created_at=row.created_at,
                scopes=list(row.scopes or []),
            )
        )
    return views, int(total or 0)


async def revoke_grant(
    gateway: Gateway, grant_id: str, *, owner: Identity | None = None, http: httpx.AsyncClient | None = None
) -> bool:
    """Revoke upstream (best effort) and delete; False when there is no such grant (of ``owner``, if given)."""
    box = gateway.box
    async with locks_for(gateway).locked(OAuthUserTokenRow, grant_id) as (session, row):
        if row is None:
            return False
        if owner is not None and (row.identity_kind, row.identity) != (owner.kind, owner.value):
            return False
        template = await session.get(OAuthConfigRow, row.oauth_config_id) if row.oauth_config_id else None
        confirmed = False
        if template is not None and template.revocation_url:
            upstream = records.upstream_client(box, template)
            secrets = (
                (tokens.refresh_token(box, row), "refresh_token"),
                (tokens.access_token(box, row), "access_token"),
            )
            for value, hint in secrets:
                if value:
                    confirmed = await revoke_at_upstream(upstream, value, hint, http=http) or confirmed
        await session.delete(row)
    outcome = "confirmed" if confirmed else "not confirmed"
    log.info("per-user grant %s for %s removed (upstream revocation %s)", grant_id, row.mcp_client_id, outcome)
    return True


async def revoke_client_grants(gateway: Gateway, mcp_client_id: str, *, http: httpx.AsyncClient | None = None) -> int:
    """Revoke and delete every identity's grant for one MCP client (call before deleting the client:
    the rows would otherwise go by cascade, with nothing revoked upstream). Returns how many were removed."""
    async with gateway.store.read() as session:
        query = select(OAuthUserTokenRow.id).where(OAuthUserTokenRow.mcp_client_id == mcp_client_id)
        grant_ids = list((await session.scalars(query)).all())
    removed = 0
    for grant_id in grant_ids:
        removed += await revoke_grant(gateway, grant_id, http=http)
    return removed
