"""Virtual keys on the hot path: extracting them from requests and checking their allow-lists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from heimdall.config.allowlists import AllowList
from heimdall.store.models import VirtualKeyRow
from heimdall.store.repos import VIRTUAL_KEY_PREFIX


@dataclass(frozen=True, slots=True)
class VKProviderRule:
    provider: str
    allowed_models: AllowList
    key_ids: AllowList
    weight: float


@dataclass(frozen=True, slots=True)
class VirtualKeyRuntime:
    id: str
    name: str
    is_active: bool
    providers: dict[str, VKProviderRule]
    provider_order: tuple[str, ...]
    mcp_configs: tuple[dict[str, Any], ...]
    can_assert_user_ids: bool

    def allows_model(self, provider: str, model: str) -> bool:
        rule = self.providers.get(provider)
        if rule is None:
            return False
        return rule.allowed_models.allows(model)

    def allows_key(self, provider: str, key_id: str) -> bool:
        rule = self.providers.get(provider)
        return rule is not None and rule.key_ids.allows(key_id)


def build_virtual_keys(rows: Sequence[VirtualKeyRow]) -> dict[str, VirtualKeyRuntime]:
    """Index by the value's keyed hash, so a request costs one HMAC and one dict lookup."""
    result: dict[str, VirtualKeyRuntime] = {}
    for row in rows:
        rules: dict[str, VKProviderRule] = {}
        for pc in row.provider_configs or []:
            rules[pc["provider"]] = VKProviderRule(
                provider=pc["provider"],
                allowed_models=AllowList(pc.get("allowed_models") or []),
                key_ids=AllowList(pc.get("key_ids") or []),
                weight=float(pc.get("weight", 1.0)),
            )
        result[row.value_hash] = VirtualKeyRuntime(
            id=row.id,
            name=row.name,
            is_active=row.is_active,
            providers=rules,
            provider_order=tuple(rules),
            mcp_configs=tuple(row.mcp_configs or []),
            can_assert_user_ids=row.can_assert_user_ids,
        )
    return result


def extract_virtual_key(headers: dict[bytes, bytes]) -> str | None:
    """Find a virtual key in ``x-bf-vk``, ``x-bf-virtual-key``, ``Authorization: Bearer`` or ``x-api-key``.

    ``headers`` maps lower-cased header names to values. Bearer and x-api-key values count only when
    they carry the ``sk-bf-`` prefix, so provider keys sent by a client are not mistaken for one.
    """
    for name in (b"x-bf-vk", b"x-bf-virtual-key"):
        value = headers.get(name)
        if value:
            return value.decode("latin-1").strip()
    auth = headers.get(b"authorization")
    if auth and auth[:7].lower() == b"bearer ":
        token = auth[7:].strip().decode("latin-1")
        if token.startswith(VIRTUAL_KEY_PREFIX):
            return token
    for name in (b"x-api-key", b"x-goog-api-key"):
        value = headers.get(name)
        if value and value.startswith(VIRTUAL_KEY_PREFIX.encode()):
            return value.decode("latin-1").strip()
    return None
