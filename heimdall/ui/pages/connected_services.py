"""Connected services: every identity's per-user upstream grant, with filters and Revoke.

A grant is one identity's own login at an upstream MCP server (``oauth_user_tokens``). Listing and
revoking reuse ``heimdall.oauth.per_user.grants``, the functions behind ``/api/oauth/per-user/grants``;
revoking sends the tokens to the upstream's RFC 7009 endpoint when it has one, then deletes the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from heimdall.gateway import Gateway
from heimdall.oauth.per_user import grants
from heimdall.oauth.per_user.identity import MAX_IDENTITY_LENGTH, Identity, describe, parse_kind
from heimdall.store import mcp_repos
from heimdall.store.mcp_models import MCPClientRow
from heimdall.store.per_user_models import OAuthUserTokenRow
from heimdall.ui.guard import AdminFormDep, AdminPage, gateway_of, safe_next
from heimdall.ui.moments import Moment, as_utc, moment
from heimdall.ui.render import page, redirect

router = APIRouter(include_in_schema=False)

PATH = "/connected-services"
PAGE_SIZE = 50
#: Grant ids are uuid4 hex strings; anything longer is not one of ours.
MAX_GRANT_ID = 64
MAX_PAGE = 100_000
KIND_LABELS = {"vk": "Virtual key", "user": "User", "session": "MCP session"}


@dataclass(frozen=True, slots=True)
class GrantRow:
    """One grant as the table shows it."""

    id: str
    service: str
    kind: str
    #: What people recognise: the virtual key's name, the user id, or a short session key.
    name: str
    #: The stored identity (virtual key id, user id or session key), for the filter.
    identity: str
    status: str
    status_reason: str | None
    expires: Moment | None
    last_used: Moment | None
    created: Moment | None


@dataclass(frozen=True, slots=True)
class Filters:
    identity: str
    service: str
    page: int

    def query(self, page_number: int | None = None) -> str:
        pairs = [("identity", self.identity), ("service", self.service)]
        number = self.page if page_number is None else page_number
        if number > 1:
            pairs.append(("page", str(number)))
        encoded = urlencode([(name, value) for name, value in pairs if value])
        return f"{PATH}?{encoded}" if encoded else PATH

    @property
    def active(self) -> bool:
        return bool(self.identity or self.service)


def _filters(request: Request) -> Filters:
    params = request.query_params
    identity = params.get("identity", "").strip()[:MAX_IDENTITY_LENGTH]
    service = params.get("service", "").strip()[:MAX_GRANT_ID]
    raw_page = params.get("page", "1")
    page_number = int(raw_page) if raw_page.isdigit() else 1
    return Filters(identity=identity, service=service, page=min(max(page_number, 1), MAX_PAGE))


def _grant_filter(gateway: Gateway, filters: Filters) -> grants.GrantFilter:
    """Typed text matches a stored identity exactly; a virtual key's name stands for that key."""
    service = filters.service or None
    if not filters.identity:
        return grants.GrantFilter(mcp_client_id=service)
    for vk in gateway.snapshot.virtual_keys_by_hash.values():
        if vk.name == filters.identity:
            return grants.GrantFilter(identity_kind="vk", identity=vk.id, mcp_client_id=service)
    return grants.GrantFilter(identity=filters.identity, mcp_client_id=service)


def _status(view: grants.GrantView, refreshable: bool, now: datetime) -> tuple[str, str | None]:
    """``active``, ``needs_reauth`` or ``expired`` (an access token past its expiry with no refresh token)."""
    if view.status != "active":
        return view.status, view.status_reason
    if view.expires_at is not None and as_utc(view.expires_at) <= now:
        if refreshable:
            return "active", "Token expired; renewed on next use"
        return "expired", "The user connects again on next use"
    return "active", view.status_reason


def _name(view: grants.GrantView) -> str:
    if view.identity_kind == "vk":
        return view.vk_name or f"{view.identity} (deleted key)"
    if view.identity_kind == "session":
        return f"{view.identity[:12]}…" if len(view.identity) > 12 else view.identity
    return view.identity


async def _refreshable(session: AsyncSession, grant_ids: list[str]) -> set[str]:
    """Which of these grants hold an upstream refresh token (never the token itself)."""
    if not grant_ids:
        return set()
    query = select(OAuthUserTokenRow.id).where(
        OAuthUserTokenRow.id.in_(grant_ids), OAuthUserTokenRow.refresh_token_encrypted.is_not(None)
    )
    return set((await session.scalars(query)).all())


def _rows(views: list[grants.GrantView], refreshable: set[str]) -> list[GrantRow]:
    now = datetime.now(UTC)
    rows: list[GrantRow] = []
    for view in views:
        status, reason = _status(view, view.id in refreshable, now)
        rows.append(
            GrantRow(
                id=view.id,
                service=view.mcp_client_name,
                kind=KIND_LABELS.get(view.identity_kind, view.identity_kind),
                name=_name(view),
                identity=view.identity,
                status=status,
                status_reason=reason,
                expires=moment(view.expires_at),
                last_used=moment(view.last_used_at),
                created=moment(view.created_at),
            )
        )
    return rows


@router.get(PATH)
async def connected_services(request: Request, admin: AdminPage) -> Response:
    gateway = gateway_of(request)
    filters = _filters(request)
    offset = (filters.page - 1) * PAGE_SIZE
    async with gateway.store.read() as session:
        clients = await mcp_repos.list_clients(session)
        views, total = await grants.list_grants(
            gateway, session, _grant_filter(gateway, filters), limit=PAGE_SIZE, offset=offset
        )
        refreshable = await _refreshable(session, [view.id for view in views])
    services = [(client.id, client.name) for client in clients if client.auth_type == "per_user_oauth"]
    pages = max(1, -(-total // PAGE_SIZE))
    return page(
        request,
        admin,
        "admin/connected_services.html",
        section="connected_services",
        grants=_rows(views, refreshable),
        total=total,
        first=offset + 1,
        last=offset + len(views),
        filters=filters,
        service_options=[("", "All services"), *services],
        has_services=bool(services),
        return_to=filters.query(),
        first_page_url=filters.query(1),
        previous_url=filters.query(min(filters.page, pages) - 1) if filters.page > 1 else None,
        next_url=filters.query(filters.page + 1) if filters.page < pages else None,
        base_url=gateway.settings.base_url,
    )


async def _describe_grant(gateway: Gateway, grant_id: str) -> str | None:
    """``notes for virtual key "team-a"``, or None when there is no such grant."""
    async with gateway.store.read() as session:
        row = await session.get(OAuthUserTokenRow, grant_id)
        if row is None:
            return None
        client = await session.get(MCPClientRow, row.mcp_client_id)
    kind = parse_kind(row.identity_kind)
    service = client.name if client is not None else "a deleted service"
    if kind == "session":
        who = "an MCP session"
    else:
        who = describe(gateway, Identity(kind, row.identity)) if kind is not None else row.identity
    return f"{service} for {who}"


def _return_to(form_value: str) -> str:
    target = safe_next(form_value)
    return target if target == PATH or target.startswith(PATH + "?") else PATH


@router.post(PATH + "/{grant_id}/revoke")
async def revoke(request: Request, grant_id: str, form: AdminFormDep) -> Response:
    gateway = gateway_of(request)
    back = _return_to(form.text("return_to"))
    described = await _describe_grant(gateway, grant_id) if len(grant_id) <= MAX_GRANT_ID else None
    if described is None or not await grants.revoke_grant(gateway, grant_id):
        return redirect(request, back, "That grant was already revoked.", kind="info")
    message = f"Revoked {described}. The next call asks to connect the account again."
    return redirect(request, back, message)
