"""The shape of config.json (the reference system's schema), as pydantic models.

Unknown fields are kept and reported as warnings by ``heimdall config check`` rather than
rejected, so a reference config file with features Heimdall does not implement still loads.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from heimdall.config.allowlists import validate_allowlist

ProviderKind = Literal["openai", "anthropic", "azure"]

#: Provider names that imply a kind (and, for hosted OpenAI-compatible APIs, a base URL).
KNOWN_PROVIDERS: dict[str, tuple[ProviderKind, str | None]] = {
    "openai": ("openai", "https://api.openai.com"),
    "anthropic": ("anthropic", "https://api.anthropic.com"),
    "azure": ("azure", None),
    "groq": ("openai", "https://api.groq.com/openai"),
    "mistral": ("openai", "https://api.mistral.ai"),
    "together": ("openai", "https://api.together.xyz"),
    "fireworks": ("openai", "https://api.fireworks.ai/inference"),
    "deepseek": ("openai", "https://api.deepseek.com"),
    "openrouter": ("openai", "https://openrouter.ai/api"),
    "xai": ("openai", "https://api.x.ai"),
    "ollama": ("openai", "http://127.0.0.1:11434"),
    "vllm": ("openai", None),
}

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.]+$")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def validate_aliases(aliases: dict[str, str]) -> dict[str, str]:
    """reference.md §7.2 rule 4: non-empty, no surrounding whitespace, unique case-insensitively."""
    seen: dict[str, str] = {}
    for alias, target in aliases.items():
        if not isinstance(target, str):
            raise ValueError(f"alias {alias!r}: target must be a string")
        if not alias:
            raise ValueError("alias names must not be empty")
        if not target:
            raise ValueError(f"alias {alias!r}: target model must not be empty")
        if alias != alias.strip():
            raise ValueError(f"alias {alias!r}: no leading or trailing whitespace allowed")
        if target != target.strip():
            raise ValueError(f"alias {alias!r}: target {target!r} has leading or trailing whitespace")
        folded = alias.casefold()
        if folded in seen:
            raise ValueError(f"alias {alias!r} duplicates {seen[folded]!r} (aliases are case-insensitive)")
        seen[folded] = alias
    return aliases


class NetworkConfig(_Open):
    base_url: str | None = Field(default=None, description="Provider origin; the gateway appends its own paths.")
    default_request_timeout_in_seconds: float = Field(default=30, gt=0, le=3600)
    max_retries: int = Field(default=1, ge=0, le=10, description="Retries on 429/5xx/transport errors.")
    retry_backoff_initial: int = Field(default=200, ge=0, le=60_000, description="First backoff, milliseconds.")
    retry_backoff_max: int = Field(default=2_000, ge=0, le=300_000, description="Backoff cap, milliseconds.")
    extra_headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("base_url must be an http(s) URL")
        if value.endswith("/v1"):  # tolerated: the gateway appends /v1 itself
            value = value[: -len("/v1")]
        return value


class AzureKeyConfig(_Open):
    endpoint: str = Field(description="https://<resource>.openai.azure.com, or env.NAME")
    api_version: str = "2024-10-21"


class ProviderKeyConfig(_Open):
    id: str | None = Field(default=None, description="Stable key id; defaults to <provider>-<index>.")
    name: str | None = None
    value: str = Field(description="The API key, or env.NAME to read it from the environment.")
    models: list[str] = Field(default_factory=list, description='Models this key serves; [] none, ["*"] all.')
    weight: float = Field(default=1.0, ge=0)
    aliases: dict[str, str] = Field(default_factory=dict, description="alias -> provider model id")
    azure_key_config: AzureKeyConfig | None = None

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: dict[str, str]) -> dict[str, str]:
        return validate_aliases(value)

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        return validate_allowlist(value)


class CustomProviderConfig(_Open):
    base_provider_type: ProviderKind


class ProviderConfig(_Open):
    keys: list[ProviderKeyConfig] = Field(default_factory=list)
    network_config: NetworkConfig = Field(default_factory=NetworkConfig)
    custom_provider_config: CustomProviderConfig | None = None


class VKProviderConfig(_Open):
    provider: str
    allowed_models: list[str] = Field(default_factory=list)
    key_ids: list[str] = Field(default_factory=list)
    weight: float = Field(default=1.0, ge=0)

    @field_validator("allowed_models", "key_ids")
    @classmethod
    def _lists(cls, value: list[str]) -> list[str]:
        return validate_allowlist(value)


class VKMCPConfig(_Open):
    mcp_client_name: str | None = None
    mcp_client_id: str | None = None
    tools_to_execute: list[str] = Field(default_factory=list)

    @field_validator("tools_to_execute")
    @classmethod
    def _tools(cls, value: list[str]) -> list[str]:
        return validate_allowlist(value)

    @model_validator(mode="after")
    def _one_client(self) -> VKMCPConfig:
        if not (self.mcp_client_name or self.mcp_client_id):
            raise ValueError("mcp_client_name or mcp_client_id is required")
        return self


class VirtualKeyConfig(_Open):
    id: str | None = None
    name: str = Field(min_length=1, max_length=255)
    value: str | None = Field(default=None, description="sk-bf-... or env.NAME; generated when omitted.")
    description: str = ""
    is_active: bool = True
    provider_configs: list[VKProviderConfig] = Field(default_factory=list)
    mcp_configs: list[VKMCPConfig] = Field(default_factory=list)
    can_assert_user_ids: bool = Field(
        default=False, description="Callers holding this key may assert end-user ids with X-Bf-User-Id."
    )


class GovernanceConfig(_Open):
    virtual_keys: list[VirtualKeyConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> GovernanceConfig:
        names = [vk.name for vk in self.virtual_keys]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate virtual key names: {sorted(dupes)}")
        return self


class ClientConfig(_Open):
    enforce_auth_on_inference: bool = False
    max_request_body_size_mb: int | None = Field(default=None, ge=1, le=1024)


class MCPConfig(_Open):
    client_configs: list[dict[str, Any]] = Field(default_factory=list)
    mcp_clients: list[dict[str, Any]] = Field(default_factory=list)


class GatewayConfig(_Open):
    """Top level of config.json."""

    version: int | None = Field(default=None, description="1 restores v1.4 allow-list semantics (empty = all).")
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    governance: GovernanceConfig = Field(default_factory=GovernanceConfig)
    mcp: MCPConfig = Field(default_factory=MCPConfig)
    client: ClientConfig = Field(default_factory=ClientConfig)

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, providers: dict[str, ProviderConfig]) -> dict[str, ProviderConfig]:
        for name, provider in providers.items():
            if not NAME_PATTERN.match(name):
                raise ValueError(f"provider name {name!r} may only contain letters, digits, '_' and '.'")
            if name not in KNOWN_PROVIDERS and provider.custom_provider_config is None:
                raise ValueError(
                    f"provider {name!r} is not a built-in provider: add custom_provider_config.base_provider_type"
                )
            kind = provider_kind(name, provider)
            default_url = KNOWN_PROVIDERS.get(name, (kind, None))[1]
            if kind != "azure" and provider.network_config.base_url is None and default_url is None:
                raise ValueError(f"provider {name!r} needs network_config.base_url")
            ids = [key.id for key in provider.keys if key.id]
            if len(ids) != len(set(ids)):
                raise ValueError(f"provider {name!r} has duplicate key ids")
            for index, key in enumerate(provider.keys):
                if kind == "azure" and key.azure_key_config is None:
                    raise ValueError(f"provider {name!r} key {index}: azure_key_config.endpoint is required")
        return providers


def provider_kind(name: str, provider: ProviderConfig) -> ProviderKind:
    if provider.custom_provider_config is not None:
        return provider.custom_provider_config.base_provider_type
    return KNOWN_PROVIDERS[name][0]


def provider_base_url(name: str, kind: ProviderKind, network: NetworkConfig) -> str | None:
    if network.base_url:
        return network.base_url
    known = KNOWN_PROVIDERS.get(name)
    return known[1] if known else None
