"""``/api/oauth/per-user/grants``: the admin's view of every identity's upstream grants (never the tokens)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from heimdall.api.deps import AdminDep, GatewayDep
from heimdall.errors import BadRequest, NotFound
from heimdall.oauth.per_user import grants
from heimdall.oauth.per_user.identity import IDENTITY_KINDS, parse_kind

router = APIRouter(prefix="/api/oauth/per-user/grants", tags=["per-user OAuth (grants)"], dependencies=[AdminDep])


@router.get("", summary="List per-user upstream grants (filter by identity and MCP client)")
async def list_grants(
    gateway: GatewayDep,
    identity_kind: str | None = Query(default=None, description="user, vk or session"),
    identity: str | None = Query(default=None, description="User id, virtual key id or session key"),
    mcp_client_id: str | None = Query(default=None),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
) -> dict[str, Any]:
    kind = parse_kind(identity_kind) if identity_kind is not None else None
    if identity_kind is not None and kind is None:
        raise BadRequest(f"identity_kind must be one of {', '.join(IDENTITY_KINDS)}", param="identity_kind")
    where = grants.GrantFilter(identity_kind=kind, identity=identity, mcp_client_id=mcp_client_id)
    async with gateway.store.read() as session:
        found, total = await grants.list_grants(gateway, session, where, limit=limit, offset=offset)
    return {"grants": [grant.as_json() for grant in found], "total_count": total, "limit": limit, "offset": offset}


@router.delete("/{grant_id}", summary="Revoke a grant (RFC 7009 at the upstream when offered) and delete it")
async def revoke_grant(grant_id: str, gateway: GatewayDep) -> dict[str, str]:
    if len(grant_id) > 64 or not await grants.revoke_grant(gateway, grant_id):
        raise NotFound("grant not found")
    return {"message": "Grant revoked successfully"}
