"""Which per-user services an identity may use and whether it connected them; links to connect them.

The consent pages (``heimdall.oauth.server.views``) and the user's connections page call these
inside their own transaction (``session``); nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.config.allowlists import AllowList
from heimdall.gateway import Gateway
from heimdall.governance.virtual_keys import VirtualKeyRuntime
from heimdall.oauth.per_user import handoffs, tokens
from heimdall.oauth.per_user.identity import Identity, parse_kind
from heimdall.store.mcp_models import MCPClientRow
from heimdall.store.per_user_models import OAuthUserTokenRow


@dataclass(frozen=True, slots=True)
class ServiceView:
    mcp_client_id: str
    name: str
    #: The identity has a token row for this service (whatever its status).
    connected: bool
    #: The row exists but cannot be used: a refresh failed for good, or it expired with no refresh token.
    needs_reauth: bool


def _allowed_for(vk: VirtualKeyRuntime, clients: Iterable[MCPClientRow]) -> list[MCPClientRow]:
    """The key's ``mcp_configs`` clients that grant at least one tool, plus ``allow_on_all_virtual_keys``
    clients the key has no row for (the catalog's rule, reference.md §8)."""
    rows = list(clients)
    by_id = {row.id: row for row in rows}
    by_name = {row.name: row for row in rows}
    granted: dict[str, bool] = {}
    for config in vk.mcp_configs:
        client = by_id.get(str(config.get("mcp_client_id") or "")) or by_name.get(
            str(config.get("mcp_client_name") or "")
        )
        if client is not None:
            granted[client.id] = bool(AllowList(config.get("tools_to_execute") or []))
    for row in rows:
        if row.allow_on_all_virtual_keys and row.id not in granted:
            granted[row.id] = True
    return [row for row in rows if granted.get(row.id)]


async def per_user_clients(session: AsyncSession) -> list[MCPClientRow]:
    """Active (verified) ``per_user_oauth`` clients, by name."""
    query = (
        select(MCPClientRow)
        .where(MCPClientRow.auth_type == "per_user_oauth", MCPClientRow.status == "active")
        .order_by(MCPClientRow.name)
    )
    return list((await session.scalars(query)).all())


async def services_for(
    gateway: Gateway,
    session: AsyncSession,
    *,
    identity_kind: str | None,
    identity: str | None,
    vk: VirtualKeyRuntime | None,
) -> list[ServiceView]:
    """The per-user services the identity may use (a key's allowed ones, else all), sorted by name.

    ``connected``/``needs_reauth`` describe the identity's own token (both False without an identity).
    """
    clients = await per_user_clients(session)
    if vk is not None:
        clients = _allowed_for(vk, clients)
    kind = parse_kind(identity_kind)
    rows: dict[str, OAuthUserTokenRow] = {}
    if kind is not None and identity and clients:
        query = select(OAuthUserTokenRow).where(
            OAuthUserTokenRow.identity_kind == kind,
            OAuthUserTokenRow.identity == identity,
            OAuthUserTokenRow.mcp_client_id.in_([client.id for client in clients]),
        )
        rows = {row.mcp_client_id: row for row in (await session.scalars(query)).all()}
    views: list[ServiceView] = []
    for client in clients:
        row = rows.get(client.id)
        stale = row is not None and (
            row.status != tokens.ACTIVE or (not row.refresh_token_encrypted and tokens.expires_within(row, 0))
        )
        views.append(ServiceView(client.id, client.name, connected=row is not None, needs_reauth=stale))
    return sorted(views, key=lambda view: view.name)


async def connect_link(
    gateway: Gateway,
    session: AsyncSession,
    *,
    mcp_client_id: str,
    identity_kind: str,
    identity: str,
    flow_id: str | None,
) -> str:
    """A fresh single-use link (``<base>/oauth/connect/<handoff id>``) that connects this service for this identity.

    Raises:
        ValueError: ``identity_kind`` is not ``user``, ``vk`` or ``session``, or ``identity`` is empty.
    """
    kind = parse_kind(identity_kind)
    if kind is None or not identity:
        raise ValueError(f"cannot connect a service for identity kind {identity_kind!r}")
    handoff = await handoffs.create(
        gateway, session, mcp_client_id=mcp_client_id, identity=Identity(kind, identity), flow_id=flow_id
    )
    return handoff.url
