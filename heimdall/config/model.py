"""The shape of config.json (the reference system's schema), as pydantic models.

Unknown fields are kept and reported as warnings by ``heimdall config check`` rather than
rejected, so a reference config file with features Heimdall does not implement still loads.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from heimdall.config.allowlists import validate_allowlist
from heimdall.mcp.config import MCPClientConfig, ToolManagerConfig
from heimdall.oauth.settings import PerUserOAuthConfig

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

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.]{1,64}$")
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
#: Longest stored key id (``provider_keys.id``); derived ids (``<provider>-<name>``) must fit too.
KEY_ID_MAX = 128


def _text(value: str) -> str:
    """Strings stored in text columns: PostgreSQL cannot store NUL characters."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _identifier(value: str) -> str:
    if not ID_PATTERN.match(value):
        raise ValueError("ids are 1-128 letters, digits, '_', '.', ':', '@' or '-'")
    return value


Text = Annotated[str, AfterValidator(_text)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_text)]
Identifier = Annotated[str, AfterValidator(_identifier)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _issue(loc: tuple[int | str, ...], message: str) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("config_error", "{message}", {"message": message}), loc=loc, input=None
    )


def _raise_issues(title: str, issues: list[InitErrorDetails]) -> None:
    """Raise errors at their own locations (nested under the validated field) instead of the field's."""
    if issues:
        raise ValidationError.from_exception_data(title, issues)


def validate_aliases(aliases: dict[str, str]) -> dict[str, str]:
    """reference.md §7.2 rule 4: non-empty, no surrounding whitespace, unique case-insensitively.

    Each problem is reported at the alias's own path (``...aliases["name"]``).
    """
    issues = []
    seen: dict[str, str] = {}
    for alias, target in aliases.items():
        if not alias:
            issues.append(_issue((alias,), "alias names must not be empty"))
        elif alias != alias.strip():
            issues.append(_issue((alias,), f"alias {alias!r}: no leading or trailing whitespace allowed"))
        if not isinstance(target, str) or not target:
            issues.append(_issue((alias,), f"alias {alias!r}: target model must be a non-empty string"))
        elif target != target.strip():
            issues.append(_issue((alias,), f"alias {alias!r}: target {target!r} has leading or trailing whitespace"))
        folded = alias.casefold()
        if folded in seen:
            message = f"alias {alias!r} duplicates {seen[folded]!r} (aliases are case-insensitive)"
            issues.append(_issue((alias,), message))
        seen.setdefault(folded, alias)
    _raise_issues("aliases", issues)
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
    id: Identifier | None = Field(default=None, description="Stable key id; defaults to <provider>-<name or index>.")
    name: Name | None = None
    value: str = Field(description="The API key, or env.NAME to read it from the environment.")
    models: list[str] = Field(default_factory=list, description='Models this key serves; [] none, ["*"] all.')
    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
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
    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)

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


def unique_providers(configs: list[VKProviderConfig]) -> list[VKProviderConfig]:
    """One rule per provider: a second entry for the same provider would silently replace the first."""
    issues = []
    seen: set[str] = set()
    for index, config in enumerate(configs):
        if config.provider in seen:
            issues.append(_issue((index, "provider"), f"duplicate provider {config.provider!r}"))
        seen.add(config.provider)
    _raise_issues("provider_configs", issues)
    return configs


class VirtualKeyConfig(_Open):
    id: Identifier | None = None
    name: Name
    value: str | None = Field(default=None, description="sk-bf-... or env.NAME; generated when omitted.")
    description: Text = ""
    is_active: bool = True
    provider_configs: list[VKProviderConfig] = Field(default_factory=list)
    mcp_configs: list[VKMCPConfig] = Field(default_factory=list)
    can_assert_user_ids: bool = Field(
        default=False, description="Callers holding this key may assert end-user ids with X-Bf-User-Id."
    )

    @field_validator("provider_configs")
    @classmethod
    def _providers(cls, value: list[VKProviderConfig]) -> list[VKProviderConfig]:
        return unique_providers(value)


class GovernanceConfig(_Open):
    virtual_keys: list[VirtualKeyConfig] = Field(default_factory=list)

    @field_validator("virtual_keys")
    @classmethod
    def _unique(cls, value: list[VirtualKeyConfig]) -> list[VirtualKeyConfig]:
        issues = []
        names: set[str] = set()
        ids: set[str] = set()
        for index, vk in enumerate(value):
            if vk.name in names:
                issues.append(_issue((index, "name"), f"duplicate virtual key name {vk.name!r}"))
            if vk.id is not None and vk.id in ids:
                issues.append(_issue((index, "id"), f"duplicate virtual key id {vk.id!r}"))
            names.add(vk.name)
            if vk.id is not None:
                ids.add(vk.id)
        _raise_issues("virtual_keys", issues)
        return value


class ClientConfig(_Open):
    enforce_auth_on_inference: bool = False
    max_request_body_size_mb: int | None = Field(default=None, ge=1, le=1024)


class MCPConfig(_Open):
    """MCP clients are read from ``client_configs`` (the reference schema) and ``mcp_clients`` (the seed page's)."""

    client_configs: list[MCPClientConfig] = Field(default_factory=list)
    mcp_clients: list[MCPClientConfig] = Field(default_factory=list)
    tool_manager_config: ToolManagerConfig = Field(default_factory=ToolManagerConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> MCPConfig:
        names = [client.name for client in (*self.client_configs, *self.mcp_clients)]
        dupes = sorted({name for name in names if names.count(name) > 1})
        if dupes:
            raise ValueError(f"duplicate MCP client names: {dupes}")
        return self

    def all_clients(self) -> list[MCPClientConfig]:
        return [*self.client_configs, *self.mcp_clients]


class GatewayConfig(_Open):
    """Top level of config.json."""

    version: int | None = Field(default=None, description="1 restores v1.4 allow-list semantics (empty = all).")
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    governance: GovernanceConfig = Field(default_factory=GovernanceConfig)
    mcp: MCPConfig = Field(default_factory=MCPConfig)
    client: ClientConfig = Field(default_factory=ClientConfig)
    per_user_oauth: PerUserOAuthConfig = Field(default_factory=PerUserOAuthConfig)

    @field_validator("providers", mode="wrap")
    @classmethod
    def _providers(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> dict[str, ProviderConfig]:
        """Check names, kinds, base URLs and key ids, reporting each problem at its own JSON path.

        Every provider is checked even when another one has field errors, so a file's errors are
        reported together rather than one at a time.
        """
        if not isinstance(value, dict):
            return handler(value)  # type: ignore[no-any-return]
        issues: list[InitErrorDetails] = []
        providers: dict[str, ProviderConfig] = {}
        for name, raw in value.items():
            try:
                providers[name] = ProviderConfig.model_validate(raw)
            except ValidationError as exc:
                issues.extend(_issue((name, *err["loc"]), _message(err["msg"])) for err in exc.errors())
            if not isinstance(name, str) or not NAME_PATTERN.match(name):
                issues.append(_issue((name,), "provider names are 1-64 letters, digits, '_' or '.'"))
        key_owners: dict[str, str] = {}
        for name, provider in providers.items():
            if name not in KNOWN_PROVIDERS and provider.custom_provider_config is None:
                issues.append(
                    _issue(
                        (name, "custom_provider_config"),
                        f"provider {name!r} is not a built-in provider: add custom_provider_config.base_provider_type",
                    )
                )
                continue
            kind = provider_kind(name, provider)
            default_url = KNOWN_PROVIDERS.get(name, (kind, None))[1]
            if kind != "azure" and provider.network_config.base_url is None and default_url is None:
                issues.append(_issue((name, "network_config", "base_url"), f"provider {name!r} needs a base_url"))
            for index, key in enumerate(provider.keys):
                key_id = key_id_for(name, index, key)
                key_loc: tuple[int | str, ...] = (name, "keys", index)
                key_loc += ("id",) if key.id else ("name",) if key.name else ()
                if key_id in key_owners:
                    issues.append(_issue(key_loc, f"key id {key_id!r} is already used by another key"))
                elif len(key_id) > KEY_ID_MAX:
                    issues.append(_issue(key_loc, f"key id {key_id[:24]!r}... is longer than {KEY_ID_MAX} characters"))
                key_owners[key_id] = name
                if kind == "azure" and key.azure_key_config is None:
                    issues.append(
                        _issue((name, "keys", index, "azure_key_config"), "azure keys need azure_key_config.endpoint")
                    )
        _raise_issues("providers", issues)
        return providers


def _message(msg: str) -> str:
    """pydantic prefixes the text of a ValueError with "Value error, "; the path already says what failed."""
    return msg.removeprefix("Value error, ")


def key_id_for(provider: str, index: int, key: ProviderKeyConfig) -> str:
    """A key's stored id: its ``id``, else ``<provider>-<name>``, else ``<provider>-<index>``."""
    return key.id or f"{provider}-{key.name or index}"


def provider_kind(name: str, provider: ProviderConfig) -> ProviderKind:
    if provider.custom_provider_config is not None:
        return provider.custom_provider_config.base_provider_type
    return KNOWN_PROVIDERS[name][0]


def provider_base_url(name: str, kind: ProviderKind, network: NetworkConfig) -> str | None:
    if network.base_url:
        return network.base_url
    known = KNOWN_PROVIDERS.get(name)
    return known[1] if known else None
