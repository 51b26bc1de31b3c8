"""MCP clients: ``/api/mcp/clients`` and ``/api/mcp/client[/{id}[/...]]`` (reference.md §2.6, §4.1, §4.10).

``none`` and ``headers`` clients are saved at once and connect in the background. ``oauth`` and
``per_user_oauth`` clients are saved only when the admin's login completed::

    POST /api/mcp/client ──▶ pending login (oauth_configs row holds the client, encrypted)
    browser ──▶ authorize_url ──▶ upstream login ──▶ /api/oauth/callback (config: authorized)
    POST /api/mcp/client/{oauth_config_id}/complete-oauth
        oauth:          save the client with the server-level token; connect
        per_user_oauth: probe once with the admin's token, save the client and what it offers,
                        then discard the admin's token (the config row stays as the per-user template)

Clients declared in config.json with an OAuth auth type wait in ``pending_verification`` until
``POST /api/mcp/client/{id}/initiate-verification`` runs the same login.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.api.deps import AdminDep, GatewayDep
from heimdall.api.mcp_client_views import (
    MCPClientList,
    MCPClientUpdate,
    MCPClientView,
    UpstreamStatus,
    client_view,
    merged_config,
    parse_client,
)
from heimdall.config.loader import resolve_env
from heimdall.errors import BadRequest, Conflict, GatewayError, NotFound
from heimdall.gateway import Gateway
from heimdall.mcp.config import MCPClientConfig, OAuthSettings
from heimdall.mcp.runtime import ClientState, MCPClientSpec, UpstreamUnavailableError
from heimdall.mcp.specs import build_spec
from heimdall.oauth.per_user.grants import revoke_client_grants
from heimdall.oauth.upstream import flow, records
from heimdall.oauth.upstream.revoke import discard_token, revoke_stored_token
from heimdall.store import mcp_repos
from heimdall.store.mcp_models import MCPClientRow, OAuthTokenRow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/mcp", tags=["mcp clients"], dependencies=[AdminDep])

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
#: How long a create or reconnect waits for the upstream before answering (it goes on in the background).
SETTLE_SECONDS = 2.0
NOT_PENDING = (
    "MCP client not found in pending OAuth clients. The OAuth flow may have expired or already been completed."
)
NEEDS_CLIENT_ID = (
    "Either client_id must be provided, or server URL must be set for OAuth discovery and dynamic client registration"
)
PER_USER_TEST_MESSAGE = (
    "Test OAuth configuration: please authorize to verify the setup. This login is only used to verify "
    "connectivity and discover available tools — it will not be saved."
)


class Upstreams(Protocol):
    def status(self, client_id: str) -> UpstreamStatus: ...

    async def reconnect(self, client_id: str) -> None: ...

    async def probe(self, spec: MCPClientSpec, headers: dict[str, str]) -> Mapping[str, object]: ...


class MCPRuntime(Protocol):
    """``request.app.state.mcp``: the running MCP gateway, as far as this API needs it."""

    @property
    def upstreams(self) -> Upstreams: ...

    async def reload_specs(self) -> None:
        """Rebuild the specs from the store and bring the upstream connections in line."""
        ...


@dataclass(frozen=True)
class DocumentedAs:
    """Documents a raw JSON body with a model's schema (the route validates it itself, to report JSON paths)."""

    model: type[BaseModel]

    def __get_pydantic_json_schema__(self, _schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return handler(self.model.__pydantic_core_schema__)


ClientBody = Annotated[dict[str, Any], Body(), DocumentedAs(MCPClientConfig)]


def runtime_of(request: Request) -> MCPRuntime | None:
    runtime: MCPRuntime | None = getattr(request.app.state, "mcp", None)
    return runtime


def _status(runtime: MCPRuntime | None, client_id: str) -> UpstreamStatus | None:
    if runtime is None:
        return None
    try:
        return runtime.upstreams.status(client_id)
    except KeyError:
        return None


async def _apply(gateway: Gateway, runtime: MCPRuntime | None) -> None:
    """After a committed write: refresh this process's snapshot and upstream connections."""
    await gateway.snapshots.changed()
    if runtime is not None:
        await runtime.reload_specs()


async def _settle(runtime: MCPRuntime | None, client_id: str) -> UpstreamStatus | None:
    """Wait (bounded) until the client's connection attempt has an outcome."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_SECONDS
    while True:
        status = _status(runtime, client_id)
        settled = status is not None and status.state != ClientState.CONNECTING
        if runtime is None or settled or loop.time() >= deadline:
            return status
        await asyncio.sleep(0.05)


async def _view(gateway: Gateway, runtime: MCPRuntime | None, client_id: str) -> MCPClientView:
    async with gateway.store.read() as session:
        row = await mcp_repos.get_client(session, client_id)
        if row is None:
            raise NotFound(f"MCP client {client_id!r} not found")
        rules = await mcp_repos.vk_rules_for(session, [row])
    return client_view(gateway.box, row, _status(runtime, row.id), rules[row.id], running=runtime is not None)


# --- reading -----------------------------------------------------------------------------------


@router.get(
    "/clients", response_model=MCPClientList, summary="List MCP clients with their state, tools and virtual-key rules"
)
async def list_clients(
    request: Request,
    gateway: GatewayDep,
    search: Annotated[str | None, Query(max_length=64, description="Part of the name (case-insensitive).")] = None,
    limit: Annotated[int, Query(ge=1, description=f"Page size (default {DEFAULT_LIMIT}, at most {MAX_LIMIT}).")] = (
        DEFAULT_LIMIT
    ),
    offset: Annotated[int, Query(ge=0)] = 0,
) -> MCPClientList:
    limit = min(limit, MAX_LIMIT)
    runtime = runtime_of(request)
    async with gateway.store.read() as session:
        rows = list(await mcp_repos.list_clients(session, search=search, limit=limit, offset=offset))
        total = await mcp_repos.count_clients(session, search=search)
        rules = await mcp_repos.vk_rules_for(session, rows)
    clients = [
        client_view(gateway.box, row, _status(runtime, row.id), rules[row.id], running=runtime is not None)
        for row in rows
    ]
    return MCPClientList(clients=clients, count=len(clients), total_count=total, limit=limit, offset=offset)


@router.get("/client/{client_id}", response_model=MCPClientView, summary="One MCP client")
async def get_client(client_id: str, request: Request, gateway: GatewayDep) -> MCPClientView:
    return await _view(gateway, runtime_of(request), client_id)


# --- creating ----------------------------------------------------------------------------------


@router.post("/client", summary="Add an MCP client (OAuth clients start the admin's login first)")
async def create_client(body: ClientBody, request: Request, gateway: GatewayDep) -> dict[str, Any]:
    config = parse_client(body)
    runtime = runtime_of(request)
    async with gateway.store.read() as session:
        await _check_free(session, config.name, config.client_id)
    if config.auth_type in ("oauth", "per_user_oauth"):
        config = config.model_copy(update={"client_id": config.client_id or mcp_repos.new_client_id()})
        return await _start_login(gateway, config)
    try:
        async with gateway.store.transaction() as session:
            await _check_free(session, config.name, config.client_id)
            row = await mcp_repos.create_client(session, gateway.box, config)
    except IntegrityError:
        raise Conflict(f"an MCP client named {config.name!r} already exists") from None
    await _apply(gateway, runtime)
    status = await _settle(runtime, row.id)
    return {
        "status": "success",
        "message": "MCP client connected successfully",
        "mcp_client_id": row.id,
        "state": status.state.value if status else ClientState.CONNECTING.value,
        "state_reason": status.reason if status else None,
    }


async def _check_free(session: AsyncSession, name: str, client_id: str | None, *, except_id: str | None = None) -> None:
    holder = await mcp_repos.get_client_by_name(session, name)
    if holder is not None and holder.id != except_id:
        raise Conflict(f"an MCP client named {name!r} already exists")
    if client_id and client_id != except_id and await mcp_repos.get_client(session, client_id) is not None:
        raise Conflict(f"an MCP client with id {client_id!r} already exists")


async def _start_login(gateway: Gateway, config: MCPClientConfig) -> dict[str, Any]:
    """Start the admin's login for an OAuth client (reference.md §4.1 steps 1-2); nothing is saved as a client."""
    oauth = config.oauth_config or OAuthSettings()
    server_url = resolve_env(config.connection_string) if config.connection_string else None
    if not server_url and not oauth.client_id:
        raise BadRequest(NEEDS_CLIENT_ID, param="oauth_config.client_id")
    try:
        pending = await flow.start_oauth_for_client(
            gateway.store,
            base_url=gateway.settings.base_url,
            server_url=server_url,
            oauth=oauth,
            purpose="per_user" if config.auth_type == "per_user_oauth" else "server",
            pending_client=config.model_dump(mode="json"),
        )
    except flow.UpstreamOAuthError as exc:
        message = exc.message if exc.message == NEEDS_CLIENT_ID else f"Failed to initiate OAuth flow: {exc.message}"
        raise BadRequest(message) from None
    response: dict[str, Any] = {
        "status": "pending_oauth",
        "message": PER_USER_TEST_MESSAGE if config.auth_type == "per_user_oauth" else "OAuth authorization required",
        "oauth_config_id": pending["oauth_config_id"],
        "authorize_url": pending["authorize_url"],
        "expires_at": pending["expires_at"],
        "mcp_client_id": config.client_id,
    }
    if config.auth_type == "oauth":
        config_id = pending["oauth_config_id"]
        response["complete_url"] = f"/api/mcp/client/{config_id}/complete-oauth"
        response["status_url"] = f"/api/oauth/config/{config_id}/status"
        response["next_steps"] = [
            "Open authorize_url in a browser and sign in to the MCP server",
            "Poll status_url until the status is 'authorized'",
            "POST complete_url to save the MCP client and connect it",
        ]
    return response


@router.post("/client/{client_id}/initiate-verification", summary="Start the verification login of an OAuth client")
async def initiate_verification(client_id: str, gateway: GatewayDep) -> dict[str, Any]:
    async with gateway.store.read() as session:
        row = await mcp_repos.get_client(session, client_id)
        if row is None:
            raise NotFound(f"MCP client {client_id!r} not found")
        config = mcp_repos.client_config(gateway.box, row)
    if config.auth_type not in ("oauth", "per_user_oauth"):
        raise BadRequest(f"MCP client {row.name!r} uses auth_type {config.auth_type!r}: there is nothing to verify")
    return await _start_login(gateway, config)


# --- completing an OAuth login -----------------------------------------------------------------


@router.post("/client/{oauth_config_id}/complete-oauth", summary="Save an OAuth MCP client once its login completed")
async def complete_oauth(oauth_config_id: str, request: Request, gateway: GatewayDep) -> dict[str, Any]:
    runtime = runtime_of(request)
    client_id: str | None = None
    admin_token: str | None = None
    try:
        async with gateway.store.transaction() as session:
            oauth_row, pending = await flow.take_pending_client(session, gateway.box, oauth_config_id)
            if oauth_row.status != "authorized":
                raise BadRequest(f"OAuth not authorized yet. Current status: {oauth_row.status}")
            if pending is None:
                raise NotFound(NOT_PENDING)
            config = _pending_config(pending, oauth_config_id)
            if config.auth_type == "oauth":
                client_id = (await _save_verified(session, gateway, config, discovered=None)).id
            else:
                token = await session.get(OAuthTokenRow, oauth_row.token_id) if oauth_row.token_id else None
                admin_token = records.access_token(gateway.box, token) if token is not None else None
    except flow.OAuthConfigNotFound as exc:
        raise NotFound(exc.message) from None
    except IntegrityError:
        raise Conflict("an MCP client with that name or id already exists") from None
    if config.auth_type == "oauth":
        await _apply(gateway, runtime)
        return {
            "status": "success",
            "message": "MCP client connected successfully with OAuth",
            "mcp_client_id": client_id,
        }
    try:
        discovered = await _probe(gateway, runtime, config, admin_token)
        try:
            async with gateway.store.transaction() as session:
                client_id = (await _save_verified(session, gateway, config, discovered=discovered)).id
        except IntegrityError:
            raise Conflict("an MCP client with that name or id already exists") from None
    finally:
        await _discard(gateway, oauth_config_id)
    await _apply(gateway, runtime)
    count = len(discovered.get("tools") or [])
    return {
        "status": "success",
        "message": (
            f"OAuth configuration verified successfully. {count} tools discovered. "
            "Each user will authenticate individually when using this MCP server."
        ),
        "tools_count": count,
        "mcp_client_id": client_id,
    }


async def _discard(gateway: Gateway, oauth_config_id: str) -> None:
    """The admin's verification token is never kept (W22), whatever happened to the verification."""
    try:
        await discard_token(gateway.store, oauth_config_id)
    except flow.OAuthConfigNotFound:
        pass
    except Exception:
        log.exception("OAuth config %s: could not discard the verification token", oauth_config_id)


def _pending_config(pending: dict[str, Any], oauth_config_id: str) -> MCPClientConfig:
    try:
        config = MCPClientConfig.model_validate({**pending, "oauth_config_id": oauth_config_id})
    except ValueError:
        raise NotFound(NOT_PENDING) from None
    return config


async def _save_verified(
    session: AsyncSession, gateway: Gateway, config: MCPClientConfig, *, discovered: dict[str, Any] | None
) -> MCPClientRow:
    """Create the client, or activate the stored one it verifies (declared in config.json)."""
    existing = await mcp_repos.get_client(session, config.client_id) if config.client_id else None
    await _check_free(session, config.name, None, except_id=existing.id if existing else None)
    if existing is not None:
        return await mcp_repos.update_client(
            session, gateway.box, existing, config, status=mcp_repos.ACTIVE, discovered=discovered
        )
    return await mcp_repos.create_client(session, gateway.box, config, discovered=discovered)


async def _probe(
    gateway: Gateway, runtime: MCPRuntime | None, config: MCPClientConfig, admin_token: str | None
) -> dict[str, Any]:
    """Connect once with the admin's token and list what the server offers (reference.md §4.1 step 5)."""
    if admin_token is None:
        raise BadRequest("OAuth configuration test failed: the authorized login has no token")
    if runtime is None:
        raise GatewayError("the MCP gateway is not running", status_code=503, error_type="service_unavailable")
    transient = MCPClientRow(id=config.client_id or mcp_repos.new_client_id(), status=mcp_repos.ACTIVE)
    mcp_repos.apply_config(gateway.box, transient, config)
    spec = build_spec(gateway.box, transient, 0)
    try:
        found = await runtime.upstreams.probe(spec, {**spec.headers, "Authorization": f"Bearer {admin_token}"})
    except UpstreamUnavailableError as exc:
        raise GatewayError(
            f"OAuth configuration test failed: {exc.message}", status_code=502, error_type="upstream_error"
        ) from None
    return dict(found)


# --- editing and removing ----------------------------------------------------------------------


@router.put("/client/{client_id}", response_model=MCPClientView, summary="Edit an MCP client (connection fixed)")
async def update_client(client_id: str, body: MCPClientUpdate, request: Request, gateway: GatewayDep) -> MCPClientView:
    runtime = runtime_of(request)
    try:
        async with gateway.store.transaction() as session:
            row = await mcp_repos.get_client(session, client_id)
            if row is None:
                raise NotFound(f"MCP client {client_id!r} not found")
            config = merged_config(mcp_repos.client_config(gateway.box, row), body)
            await _check_free(session, config.name, None, except_id=row.id)
            await mcp_repos.update_client(session, gateway.box, row, config)
            if body.vk_configs is not None:
                rules = {rule.virtual_key_id: rule.tools_to_execute for rule in body.vk_configs}
                if len(rules) != len(body.vk_configs):
                    raise BadRequest("vk_configs: each virtual key may appear once", param="vk_configs")
                try:
                    await mcp_repos.replace_vk_rules(session, row, rules)
                except LookupError as exc:
                    raise BadRequest(f"vk_configs: {exc.args[0]}", param="vk_configs") from None
    except IntegrityError:
        raise Conflict("an MCP client with that name already exists") from None
    await _apply(gateway, runtime)
    return await _view(gateway, runtime, client_id)


@router.delete("/client/{client_id}", summary="Remove an MCP client")
async def delete_client(client_id: str, request: Request, gateway: GatewayDep) -> dict[str, str]:
    # Every user's grant for this server is revoked upstream (best effort) before the rows cascade away.
    await revoke_client_grants(gateway, client_id)
    async with gateway.store.transaction() as session:
        row = await mcp_repos.get_client(session, client_id)
        oauth_config_id = row.oauth_config_id if row is not None else None
        if not await mcp_repos.delete_client(session, client_id):
            raise NotFound(f"MCP client {client_id!r} not found")
        still_used = oauth_config_id is not None and await mcp_repos.uses_oauth_config(session, oauth_config_id)
    await _apply(gateway, runtime_of(request))
    if oauth_config_id is not None and not still_used:
        await _revoke(gateway, oauth_config_id)
    return {"status": "success", "message": "MCP client removed successfully"}


async def _revoke(gateway: Gateway, oauth_config_id: str) -> None:
    """A removed client's server-level token is revoked and deleted; its config row stays, marked revoked."""
    try:
        await revoke_stored_token(gateway.store, oauth_config_id)
    except flow.OAuthConfigNotFound:
        pass
    except Exception:
        log.exception("OAuth config %s: could not revoke the token of a removed MCP client", oauth_config_id)


@router.post("/client/{client_id}/reconnect", summary="Reconnect an MCP client now")
async def reconnect_client(client_id: str, request: Request, gateway: GatewayDep) -> dict[str, Any]:
    runtime = runtime_of(request)
    async with gateway.store.read() as session:
        row = await mcp_repos.get_client(session, client_id)
    if row is None:
        raise NotFound(f"MCP client {client_id!r} not found")
    if row.status == mcp_repos.PENDING_VERIFICATION:
        raise BadRequest(f"MCP client {row.name!r} waits for verification: run its verification login first")
    if runtime is None:
        raise GatewayError("the MCP gateway is not running", status_code=503, error_type="service_unavailable")
    try:
        await runtime.upstreams.reconnect(client_id)
    except KeyError:
        await runtime.reload_specs()  # written by another process a moment ago
        await runtime.upstreams.reconnect(client_id)
    status = await _settle(runtime, client_id)
    return {
        "status": "success",
        "message": "MCP client reconnected successfully",
        "state": status.state.value if status else ClientState.CONNECTING.value,
        "state_reason": status.reason if status else None,
    }
