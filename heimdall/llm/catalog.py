"""The in-memory view of providers and keys that the hot path reads (no database query per request)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from heimdall.config.allowlists import AllowList
from heimdall.config.loader import resolve_env
from heimdall.config.model import NetworkConfig, ProviderKind, provider_base_url
from heimdall.crypto import CryptoError, SecretBox
from heimdall.store.models import ProviderKeyRow, ProviderRow
from heimdall.store.repos import decrypt_key_value

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KeyRuntime:
    id: str
    name: str
    provider: str
    #: The resolved secret, or None when it refers to an unset environment variable.
    secret: str | None
    models: AllowList
    weight: float
    aliases: dict[str, str]
    aliases_folded: dict[str, str]
    azure_endpoint: str | None = None
    azure_api_version: str | None = None

    def serves(self, model: str) -> bool:
        """Alias names count as model names for the key's allow-list (reference.md §7.2 rule 1)."""
        return self.models.allows(model) or model in self.aliases or model.casefold() in self.aliases_folded

    def resolve_alias(self, model: str) -> str:
        """Exact alias first, then case-insensitive; a miss sends the model unchanged (§7.2 rule 2)."""
        target = self.aliases.get(model)
        if target is not None:
            return target
        return self.aliases_folded.get(model.casefold(), model)


@dataclass(frozen=True, slots=True)
class ProviderRuntime:
    name: str
    kind: ProviderKind
    base_url: str | None
    timeout: float
    max_retries: int
    backoff_initial: float
    backoff_max: float
    extra_headers: dict[str, str]
    keys: tuple[KeyRuntime, ...] = field(default_factory=tuple)

    def explicit_models(self) -> list[str]:
        names: dict[str, None] = {}
        for key in self.keys:
            for model in sorted(key.models.names):
                if model != "*":
                    names.setdefault(model, None)
            for alias in key.aliases:
                names.setdefault(alias, None)
        return list(names)


def build_key(box: SecretBox, row: ProviderKeyRow) -> KeyRuntime:
    try:
        stored = decrypt_key_value(box, row)
    except CryptoError:
        log.error("provider key %s cannot be decrypted with the configured encryption key", row.id)
        stored = None
    secret = resolve_env(stored) if stored is not None else None
    azure = row.azure_key_config or {}
    endpoint = resolve_env(azure["endpoint"]) if azure.get("endpoint") else None
    return KeyRuntime(
        id=row.id,
        name=row.name,
        provider=row.provider_name,
        secret=secret,
        models=AllowList(row.models or []),
        weight=row.weight,
        aliases=dict(row.aliases or {}),
        aliases_folded={alias.casefold(): target for alias, target in (row.aliases or {}).items()},
        azure_endpoint=endpoint.rstrip("/") if endpoint else None,
        azure_api_version=azure.get("api_version"),
    )


def build_providers(
    box: SecretBox, providers: Sequence[ProviderRow], keys: Sequence[ProviderKeyRow]
) -> dict[str, ProviderRuntime]:
    keys_by_provider: dict[str, list[KeyRuntime]] = {}
    for row in keys:
        keys_by_provider.setdefault(row.provider_name, []).append(build_key(box, row))
    result: dict[str, ProviderRuntime] = {}
    for provider in providers:
        network = NetworkConfig.model_validate(provider.network_config or {})
        kind: ProviderKind = provider.kind  # type: ignore[assignment]
        result[provider.name] = ProviderRuntime(
            name=provider.name,
            kind=kind,
            base_url=provider_base_url(provider.name, kind, network),
            timeout=network.default_request_timeout_in_seconds,
            max_retries=network.max_retries,
            backoff_initial=network.retry_backoff_initial / 1000,
            backoff_max=network.retry_backoff_max / 1000,
            extra_headers=dict(network.extra_headers),
            keys=tuple(keys_by_provider.get(provider.name, [])),
        )
    return result


def network_config_dict(network: NetworkConfig) -> dict[str, Any]:
    return network.model_dump(exclude_none=True)
