"""Gateway-wide settings: ``GET/PUT /api/config`` (the ``client`` section of config.json)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from heimdall.api.deps import AdminDep, GatewayDep
from heimdall.config.model import ClientConfig
from heimdall.store import repos

router = APIRouter(prefix="/api/config", tags=["config"], dependencies=[AdminDep])


class ConfigView(BaseModel):
    client: ClientConfig
    public_url: str
    store: str


class ConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client: ClientConfig


@router.get("", response_model=ConfigView, summary="Gateway settings")
async def get_config(gateway: GatewayDep) -> ConfigView:
    async with gateway.store.read() as session:
        client = await repos.get_setting(session, repos.CLIENT_CONFIG_KEY, {}) or {}
    return ConfigView(
        client=ClientConfig.model_validate(client),
        public_url=gateway.settings.base_url,
        store=gateway.store.engine.dialect.name,
    )


@router.put("", response_model=ConfigView, summary="Change gateway settings")
async def update_config(body: ConfigUpdate, gateway: GatewayDep) -> ConfigView:
    async with gateway.store.transaction() as session:
        await repos.set_setting(session, repos.CLIENT_CONFIG_KEY, body.client.model_dump(exclude_none=True))
    await gateway.snapshots.changed()
    return await get_config(gateway)
