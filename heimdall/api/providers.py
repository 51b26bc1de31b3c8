"""Providers and their keys: ``/api/providers[/{name}[/keys[/{key_id}]]]``.

Key values are write-only: responses show an ``env.NAME`` reference as is, and a literal key only
as its last four characters.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from heimdall.api.deps import AdminDep, GatewayDep
from heimdall.config.allowlists import validate_allowlist
from heimdall.config.loader import ENV_PREFIX, validation_issues
from heimdall.config.model import (
    KEY_ID_MAX,
    KNOWN_PROVIDERS,
    AzureKeyConfig,
    CustomProviderConfig,
    GatewayConfig,
    Name,
    NetworkConfig,
    ProviderConfig,
    ProviderKeyConfig,
    key_id_for,
    provider_kind,
    validate_aliases,
)
from heimdall.config.seed import key_payload
from heimdall.crypto import CryptoError
from heimdall.errors import BadRequest, Conflict, NotFound
from heimdall.gateway import Gateway
from heimdall.store import repos
from heimdall.store.models import ProviderKeyRow, ProviderRow

router = APIRouter(prefix="/api/providers", tags=["providers"], dependencies=[AdminDep])


class KeyView(BaseModel):
    id: str
    name: str
    provider: str
    value: str | None = Field(description="The env.NAME reference; null for literal keys (never returned).")
    value_hint: str | None = Field(description="Last characters of a literal key.")
    models: list[str]
    weight: float
    aliases: dict[str, str]
    azure_key_config: dict[str, Any] | None = None


class ProviderView(BaseModel):
    name: str
    kind: str
    network_config: dict[str, Any]
    keys: list[KeyView]


class ProviderList(BaseModel):
    providers: list[ProviderView]


class ProviderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    custom_provider_config: CustomProviderConfig | None = None
    network_config: NetworkConfig = Field(default_factory=NetworkConfig)
    keys: list[ProviderKeyConfig] = Field(default_factory=list)


class ProviderUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network_config: NetworkConfig | None = None
    custom_provider_config: CustomProviderConfig | None = None


class KeyUpdate(BaseModel):
    """Every field optional; an omitted ``value`` keeps the stored secret."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    value: str | None = None
    models: list[str] | None = None
    weight: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    aliases: dict[str, str] | None = None
    azure_key_config: AzureKeyConfig | None = None

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return validate_aliases(value) if value is not None else None

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str] | None) -> list[str] | None:
        return validate_allowlist(value) if value is not None else None


def key_view(gateway: Gateway, row: ProviderKeyRow) -> KeyView:
    try:
        stored: str | None = repos.decrypt_key_value(gateway.box, row)
    except CryptoError:
        stored = None
    is_env = stored is not None and stored.startswith(ENV_PREFIX)
    return KeyView(
        id=row.id,
        name=row.name,
        provider=row.provider_name,
        value=stored if is_env else None,
        value_hint=None if is_env or stored is None else repos.value_hint(stored),
        models=list(row.models or []),
        weight=row.weight,
        aliases=dict(row.aliases or {}),
        azure_key_config=row.azure_key_config,
    )


def provider_view(gateway: Gateway, row: ProviderRow, keys: list[ProviderKeyRow]) -> ProviderView:
    return ProviderView(
        name=row.name,
        kind=row.kind,
        network_config=row.network_config or {},
        keys=[key_view(gateway, key) for key in keys],
    )


class InvalidProvider(BadRequest):
    """A provider the config file would reject. ``locations`` pairs each problem's location below
    ``providers.<name>`` with its message, for callers that point at a form field (the web UI)."""

    def __init__(self, exc: ValidationError) -> None:
        problems = [str(issue) for issue in validation_issues(exc)]
        super().__init__("invalid provider: " + "; ".join(problems), extra_fields={"errors": problems})
        self.locations: list[tuple[tuple[int | str, ...], str]] = [
            (tuple(err["loc"])[2:], err["msg"].removeprefix("Value error, ")) for err in exc.errors()
        ]


def validated_provider(name: str, provider: ProviderConfig) -> GatewayConfig:
    """Validate a provider exactly as the config file would be, so both paths give the same errors.

    Raises:
        InvalidProvider: with every problem found.
    """
    try:
        return GatewayConfig.model_validate({"providers": {name: provider.model_dump(exclude_none=True)}})
    except ValidationError as exc:
        raise InvalidProvider(exc) from None


async def _load(gateway: Gateway, name: str) -> ProviderView:
    async with gateway.store.read() as session:
        row = await repos.get_provider(session, name)
        if row is None:
            raise NotFound(f"provider {name!r} not found")
        keys = list(await repos.list_keys(session, name))
    return provider_view(gateway, row, keys)


@router.get("", response_model=ProviderList, summary="List providers and their keys (values masked)")
async def list_providers(gateway: GatewayDep) -> ProviderList:
    async with gateway.store.read() as session:
        rows = await repos.list_providers(session)
        keys = list(await repos.list_keys(session))
    return ProviderList(
        providers=[provider_view(gateway, row, [k for k in keys if k.provider_name == row.name]) for row in rows]
    )


@router.post("", response_model=ProviderView, status_code=status.HTTP_201_CREATED, summary="Add a provider")
async def create_provider(body: ProviderCreate, gateway: GatewayDep) -> ProviderView:
    config = ProviderConfig(
        keys=body.keys, network_config=body.network_config, custom_provider_config=body.custom_provider_config
    )
    validated = validated_provider(body.name, config).providers[body.name]
    async with gateway.store.transaction() as session:
        if await repos.get_provider(session, body.name) is not None:
            raise Conflict(f"provider {body.name!r} already exists; use PUT /api/providers/{body.name}")
        await repos.upsert_provider(
            session, body.name, provider_kind(body.name, validated), validated.network_config.model_dump()
        )
        for index, key in enumerate(validated.keys):
            if await repos.get_key(session, key_id_for(body.name, index, key)) is not None:
                raise Conflict(f"key id {key_id_for(body.name, index, key)!r} is already in use")
            await repos.upsert_key(session, gateway.box, **key_payload(body.name, index, key))  # type: ignore[arg-type]
    await gateway.snapshots.changed()
    return await _load(gateway, body.name)


@router.get("/{name}", response_model=ProviderView, summary="One provider")
async def get_provider(name: str, gateway: GatewayDep) -> ProviderView:
    return await _load(gateway, name)


@router.put("/{name}", response_model=ProviderView, summary="Change a provider's network or custom config")
async def update_provider(name: str, body: ProviderUpdate, gateway: GatewayDep) -> ProviderView:
    async with gateway.store.transaction() as session:
        row = await repos.get_provider(session, name)
        if row is None:
            raise NotFound(f"provider {name!r} not found")
        network = body.network_config or NetworkConfig.model_validate(row.network_config or {})
        custom = body.custom_provider_config
        if custom is None and row.kind != provider_kind_default(name):
            custom = CustomProviderConfig.model_validate({"base_provider_type": row.kind})
        keys = await repos.list_keys(session, name)
        probe = ProviderConfig(network_config=network, custom_provider_config=custom)
        if row.kind == "azure" or (custom and custom.base_provider_type == "azure"):
            probe.keys = [
                ProviderKeyConfig(value="x", azure_key_config=AzureKeyConfig.model_validate(k.azure_key_config))
                for k in keys
                if k.azure_key_config
            ]
        validated = validated_provider(name, probe).providers[name]
        await repos.upsert_provider(session, name, provider_kind(name, validated), network.model_dump())
    await gateway.snapshots.changed()
    return await _load(gateway, name)


def provider_kind_default(name: str) -> str | None:
    known = KNOWN_PROVIDERS.get(name)
    return known[0] if known else None


@router.delete("/{name}", summary="Remove a provider and its keys")
async def delete_provider(name: str, gateway: GatewayDep) -> dict[str, str]:
    async with gateway.store.transaction() as session:
        if not await repos.delete_provider(session, name):
            raise NotFound(f"provider {name!r} not found")
    await gateway.snapshots.changed()
    return {"status": "success", "message": f"provider {name!r} deleted"}


@router.get("/{name}/keys", response_model=list[KeyView], summary="A provider's keys (values masked)")
async def list_keys(name: str, gateway: GatewayDep) -> list[KeyView]:
    return (await _load(gateway, name)).keys


@router.post("/{name}/keys", response_model=KeyView, status_code=status.HTTP_201_CREATED, summary="Add a key")
async def create_key(name: str, body: ProviderKeyConfig, gateway: GatewayDep) -> KeyView:
    async with gateway.store.transaction() as session:
        row = await repos.get_provider(session, name)
        if row is None:
            raise NotFound(f"provider {name!r} not found")
        existing = await repos.list_keys(session, name)
        index = len(existing)
        if body.id is None and body.name is None:
            # <provider>-<index>: skip indexes still taken after earlier keys were deleted.
            while await repos.get_key(session, key_id_for(name, index, body)) is not None:
                index += 1
        key_id = key_id_for(name, index, body)
        if len(key_id) > KEY_ID_MAX:
            raise BadRequest(f"key id {key_id[:24]!r}... is longer than {KEY_ID_MAX} characters", param="name")
        if await repos.get_key(session, key_id) is not None:
            raise Conflict(f"key id {key_id!r} is already in use")
        if row.kind == "azure" and body.azure_key_config is None:
            raise BadRequest("azure keys need azure_key_config.endpoint", param="azure_key_config")
        saved = await repos.upsert_key(session, gateway.box, **key_payload(name, index, body))  # type: ignore[arg-type]
        view = key_view(gateway, saved)
    await gateway.snapshots.changed()
    return view


@router.put("/{name}/keys/{key_id}", response_model=KeyView, summary="Edit a key (omit value to keep it)")
async def update_key(name: str, key_id: str, body: KeyUpdate, gateway: GatewayDep) -> KeyView:
    async with gateway.store.transaction() as session:
        row = await repos.get_key(session, key_id)
        if row is None or row.provider_name != name:
            raise NotFound(f"key {key_id!r} of provider {name!r} not found")
        saved = await repos.upsert_key(
            session,
            gateway.box,
            provider_name=name,
            key_id=key_id,
            name=body.name if body.name is not None else row.name,
            value=body.value,
            models=body.models if body.models is not None else list(row.models or []),
            weight=body.weight if body.weight is not None else row.weight,
            aliases=body.aliases if body.aliases is not None else dict(row.aliases or {}),
            azure_key_config=body.azure_key_config.model_dump() if body.azure_key_config else row.azure_key_config,
        )
        view = key_view(gateway, saved)
    await gateway.snapshots.changed()
    return view


@router.delete("/{name}/keys/{key_id}", summary="Remove a key")
async def delete_key(name: str, key_id: str, gateway: GatewayDep) -> dict[str, str]:
    async with gateway.store.transaction() as session:
        row = await repos.get_key(session, key_id)
        if row is None or row.provider_name != name:
            raise NotFound(f"key {key_id!r} of provider {name!r} not found")
        await repos.delete_key(session, key_id)
    await gateway.snapshots.changed()
    return {"status": "success", "message": f"key {key_id!r} deleted"}
