"""Seed the store from config.json on start.

Entries named in the file are upserted (the file wins for what it names); entries created through
the management API and absent from the file are kept. Seeding runs in one transaction.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.config.loader import resolve_env
from heimdall.config.model import GatewayConfig, ProviderKeyConfig, VirtualKeyConfig, key_id_for, provider_kind
from heimdall.crypto import SecretBox
from heimdall.mcp.seed import seed_mcp
from heimdall.oauth.oidc import sealing
from heimdall.store import repos
from heimdall.store.models import VirtualKeyRow

log = logging.getLogger(__name__)


@dataclass
class SeedReport:
    providers: int = 0
    keys: int = 0
    virtual_keys: int = 0
    #: Virtual keys the file declared without a value: their generated values, shown once.
    generated_virtual_keys: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def key_payload(provider: str, index: int, key: ProviderKeyConfig) -> dict[str, object]:
    return {
        "provider_name": provider,
        "key_id": key_id_for(provider, index, key),
        "name": key.name or key_id_for(provider, index, key),
        "value": key.value,
        "models": list(key.models),
        "weight": key.weight,
        "aliases": dict(key.aliases),
        "azure_key_config": key.azure_key_config.model_dump() if key.azure_key_config else None,
    }


async def apply_virtual_key(
    session: AsyncSession, box: SecretBox, vk: VirtualKeyConfig, *, existing: VirtualKeyRow | None
) -> tuple[VirtualKeyRow, str | None]:
    """Create or update a virtual key row from its config; returns the row and a newly generated value."""
    generated: str | None = None
    value = resolve_env(vk.value) if vk.value else None
    if vk.value and value is None:
        raise ValueError(f"virtual key {vk.name!r}: environment variable {vk.value[4:]} is not set")
    row = existing or VirtualKeyRow(id=vk.id or f"vk-{uuid.uuid4().hex[:12]}", name=vk.name)
    if value is None and existing is None:
        value = generated = repos.new_virtual_key_value()
    if value is not None:
        row.value_hash = box.lookup_hash(value)
        row.value_hint = repos.value_hint(value)
    row.name = vk.name
    row.description = vk.description
    row.is_active = vk.is_active
    row.provider_configs = [pc.model_dump(exclude_none=True) for pc in vk.provider_configs]
    row.mcp_configs = [mc.model_dump(exclude_none=True) for mc in vk.mcp_configs]
    row.can_assert_user_ids = vk.can_assert_user_ids
    await repos.save_virtual_key(session, row)
    return row, generated


async def seed_store(session: AsyncSession, box: SecretBox, config: GatewayConfig) -> SeedReport:
    report = SeedReport()
    for name, provider in config.providers.items():
        network = provider.network_config.model_dump(exclude_none=True)
        await repos.upsert_provider(session, name, provider_kind(name, provider), network)
        report.providers += 1
        for index, key in enumerate(provider.keys):
            await repos.upsert_key(session, box, **key_payload(name, index, key))  # type: ignore[arg-type]
            report.keys += 1
    for index, vk in enumerate(config.governance.virtual_keys):
        if vk.value and resolve_env(vk.value) is None:
            # Fail closed without failing the start: a new key is not created, a stored one is left as it is.
            warning = f"$.governance.virtual_keys[{index}] ({vk.name!r}) was not applied: {vk.value} is not set"
            log.warning("%s", warning)
            report.warnings.append(warning)
            continue
        existing = await repos.get_virtual_key(session, vk.id) if vk.id else None
        existing = existing or await repos.get_virtual_key_by_name(session, vk.name)
        _, generated = await apply_virtual_key(session, box, vk, existing=existing)
        if generated:
            report.generated_virtual_keys[vk.name] = generated
        report.virtual_keys += 1
    if "per_user_oauth" in config.model_fields_set:
        per_user = sealing.seal(box, config.per_user_oauth.model_dump(exclude_none=True))
        await repos.set_setting(session, repos.PER_USER_OAUTH_KEY, per_user)
    if "client" in config.model_fields_set:
        await repos.set_setting(session, repos.CLIENT_CONFIG_KEY, config.client.model_dump(exclude_none=True))
    report.warnings.extend((await seed_mcp(session, box, config)).warnings)
    return report
