"""Virtual keys: ``/api/governance/virtual-keys[/{id}]``. The value is returned once, on creation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.exc import IntegrityError

from heimdall.api.deps import AdminDep, GatewayDep
from heimdall.config.model import Name, Text, VirtualKeyConfig, VKMCPConfig, VKProviderConfig, unique_providers
from heimdall.config.seed import apply_virtual_key
from heimdall.errors import BadRequest, Conflict, NotFound
from heimdall.store import repos
from heimdall.store.models import VirtualKeyRow

router = APIRouter(prefix="/api/governance/virtual-keys", tags=["virtual keys"], dependencies=[AdminDep])


class VirtualKeyView(BaseModel):
    id: str
    name: str
    description: str
    value_hint: str
    is_active: bool
    provider_configs: list[dict[str, Any]]
    mcp_configs: list[dict[str, Any]]
    can_assert_user_ids: bool


class VirtualKeyCreated(VirtualKeyView):
    value: str = Field(description="The key itself. Shown only in this response; store it now.")


class VirtualKeyList(BaseModel):
    virtual_keys: list[VirtualKeyView]
    count: int


class VirtualKeyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    description: Text | None = None
    is_active: bool | None = None
    provider_configs: list[VKProviderConfig] | None = None
    mcp_configs: list[VKMCPConfig] | None = None
    can_assert_user_ids: bool | None = None

    @field_validator("provider_configs")
    @classmethod
    def _providers(cls, value: list[VKProviderConfig] | None) -> list[VKProviderConfig] | None:
        return unique_providers(value) if value is not None else None


def view(row: VirtualKeyRow) -> VirtualKeyView:
    return VirtualKeyView(
        id=row.id,
        name=row.name,
        description=row.description,
        value_hint=row.value_hint,
        is_active=row.is_active,
        provider_configs=list(row.provider_configs or []),
        mcp_configs=list(row.mcp_configs or []),
        can_assert_user_ids=row.can_assert_user_ids,
    )


@router.get("", response_model=VirtualKeyList, summary="List virtual keys (values are never returned)")
async def list_virtual_keys(gateway: GatewayDep) -> VirtualKeyList:
    async with gateway.store.read() as session:
        rows = await repos.list_virtual_keys(session)
    return VirtualKeyList(virtual_keys=[view(row) for row in rows], count=len(rows))


@router.post("", response_model=VirtualKeyCreated, status_code=status.HTTP_201_CREATED, summary="Create a virtual key")
async def create_virtual_key(body: VirtualKeyConfig, gateway: GatewayDep) -> VirtualKeyCreated:
    if body.value is not None and not body.value.startswith(repos.VIRTUAL_KEY_PREFIX):
        raise BadRequest(f"virtual key values must start with {repos.VIRTUAL_KEY_PREFIX}", param="value")
    value = body.value or repos.new_virtual_key_value()
    body = body.model_copy(update={"value": value})
    try:
        async with gateway.store.transaction() as session:
            if body.id and await repos.get_virtual_key(session, body.id) is not None:
                raise Conflict(f"virtual key id {body.id!r} already exists")
            if await repos.get_virtual_key_by_name(session, body.name) is not None:
                raise Conflict(f"a virtual key named {body.name!r} already exists")
            if await repos.get_virtual_key_by_value(session, gateway.box, value) is not None:
                raise Conflict("that virtual key value is already in use")
            row, _ = await apply_virtual_key(session, gateway.box, body, existing=None)
            created = VirtualKeyCreated(**view(row).model_dump(), value=value)
    except IntegrityError:
        raise Conflict("a virtual key with that id, name or value already exists") from None
    await gateway.snapshots.changed()
    return created


async def _get(gateway: GatewayDep, vk_id: str) -> VirtualKeyRow:
    async with gateway.store.read() as session:
        row = await repos.get_virtual_key(session, vk_id)
    if row is None:
        raise NotFound(f"virtual key {vk_id!r} not found")
    return row


@router.get("/{vk_id}", response_model=VirtualKeyView, summary="One virtual key")
async def get_virtual_key(vk_id: str, gateway: GatewayDep) -> VirtualKeyView:
    return view(await _get(gateway, vk_id))


@router.put("/{vk_id}", response_model=VirtualKeyView, summary="Change a virtual key (its value cannot change)")
async def update_virtual_key(vk_id: str, body: VirtualKeyUpdate, gateway: GatewayDep) -> VirtualKeyView:
    try:
        async with gateway.store.transaction() as session:
            row = await repos.get_virtual_key(session, vk_id)
            if row is None:
                raise NotFound(f"virtual key {vk_id!r} not found")
            if body.name is not None and body.name != row.name:
                if await repos.get_virtual_key_by_name(session, body.name) is not None:
                    raise Conflict(f"a virtual key named {body.name!r} already exists")
                row.name = body.name
            if body.description is not None:
                row.description = body.description
            if body.is_active is not None:
                row.is_active = body.is_active
            if body.provider_configs is not None:
                row.provider_configs = [pc.model_dump(exclude_none=True) for pc in body.provider_configs]
            if body.mcp_configs is not None:
                row.mcp_configs = [mc.model_dump(exclude_none=True) for mc in body.mcp_configs]
            if body.can_assert_user_ids is not None:
                row.can_assert_user_ids = body.can_assert_user_ids
            await repos.save_virtual_key(session, row)
            result = view(row)
    except IntegrityError:
        raise Conflict("a virtual key with that name already exists") from None
    await gateway.snapshots.changed()
    return result


@router.delete("/{vk_id}", summary="Delete a virtual key")
async def delete_virtual_key(vk_id: str, gateway: GatewayDep) -> dict[str, str]:
    async with gateway.store.transaction() as session:
        if not await repos.delete_virtual_key(session, vk_id):
            raise NotFound(f"virtual key {vk_id!r} not found")
    await gateway.snapshots.changed()
    return {"status": "success", "message": f"virtual key {vk_id!r} deleted"}
