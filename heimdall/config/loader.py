"""Read config.json: legacy conversions, validation with JSON-path errors, and warnings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from heimdall.config.model import GatewayConfig

ENV_PREFIX = "env."
_LEGACY_DEPLOYMENT_CONFIGS = ("azure_key_config", "bedrock_key_config", "vertex_key_config", "replicate_key_config")


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """The file is not valid; ``issues`` lists every problem with its JSON path."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        super().__init__(f"{source}: {len(issues)} error(s)")
        self.source = source
        self.issues = issues


@dataclass
class LoadedConfig:
    config: GatewayConfig
    warnings: list[str] = field(default_factory=list)


def json_path(loc: tuple[int | str, ...]) -> str:
    path = "$"
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.isidentifier():
            path += f".{part}"
        else:
            path += f"[{orjson.dumps(part).decode()}]"
    return path


def validation_issues(exc: ValidationError) -> list[ConfigIssue]:
    """pydantic errors as JSON-path issues (without pydantic's "Value error, " prefix)."""
    return [ConfigIssue(json_path(tuple(err["loc"])), err["msg"].removeprefix("Value error, ")) for err in exc.errors()]


def resolve_env(value: str) -> str | None:
    """``env.NAME`` -> the variable's value (None when unset); anything else is a literal."""
    if value.startswith(ENV_PREFIX):
        return os.environ.get(value[len(ENV_PREFIX) :])
    return value


def _convert_legacy(raw: dict[str, Any], source: str, warnings: list[str]) -> None:
    """Move old ``*_key_config.deployments`` maps into ``aliases`` (reference.md §7.4)."""
    providers = raw.get("providers")
    if not isinstance(providers, dict):
        return
    for provider_name, provider in providers.items():
        keys = provider.get("keys") if isinstance(provider, dict) else None
        if not isinstance(keys, list):
            continue
        for index, key in enumerate(keys):
            if not isinstance(key, dict):
                continue
            for config_name in _LEGACY_DEPLOYMENT_CONFIGS:
                sub = key.get(config_name)
                if not isinstance(sub, dict) or not isinstance(sub.get("deployments"), dict):
                    continue  # absent, or malformed: left in place for validation to report
                aliases = key.setdefault("aliases", {})
                if not isinstance(aliases, dict):
                    continue
                for alias, target in sub.pop("deployments").items():
                    aliases.setdefault(alias, target)  # an explicit alias wins over a legacy deployment
                key_path = json_path(("providers", provider_name, "keys", index))
                warnings.append(
                    f"{source}: {key_path}.{config_name}.deployments is deprecated "
                    f"and was converted to {key_path}.aliases; edit the file to use aliases"
                )


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects in a list (or a dict's values); anything malformed is left for validation to report."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [item for item in items if isinstance(item, dict)]


def _apply_v1_semantics(raw: dict[str, Any]) -> None:
    """``"version": 1`` files meant "empty allow-list = allow all"; rewrite them to ``["*"]``."""

    def allow_all_if_empty(obj: dict[str, Any], list_name: str) -> None:
        if obj.get(list_name) in (None, []):
            obj[list_name] = ["*"]

    for provider in _dicts(raw.get("providers")):
        for key in _dicts(provider.get("keys")):
            allow_all_if_empty(key, "models")
    governance = raw.get("governance")
    for vk in _dicts(governance.get("virtual_keys") if isinstance(governance, dict) else None):
        for pc in _dicts(vk.get("provider_configs")):
            allow_all_if_empty(pc, "allowed_models")
            allow_all_if_empty(pc, "key_ids")
        for mc in _dicts(vk.get("mcp_configs")):
            allow_all_if_empty(mc, "tools_to_execute")
    mcp = raw.get("mcp")
    if isinstance(mcp, dict):
        for client in _dicts(mcp.get("client_configs")) + _dicts(mcp.get("mcp_clients")):
            allow_all_if_empty(client, "tools_to_execute")


def _unknown_fields(model: BaseModel, loc: tuple[int | str, ...], out: list[str]) -> None:
    for name in model.model_extra or {}:
        out.append(f"{json_path((*loc, name))}: unknown field, ignored")
    for name in type(model).model_fields:
        value = getattr(model, name)
        children: list[tuple[tuple[int | str, ...], Any]]
        if isinstance(value, BaseModel):
            children = [((*loc, name), value)]
        elif isinstance(value, list):
            children = [((*loc, name, i), v) for i, v in enumerate(value)]
        elif isinstance(value, dict):
            children = [((*loc, name, k), v) for k, v in value.items()]
        else:
            continue
        for child_loc, child in children:
            if isinstance(child, BaseModel):
                _unknown_fields(child, child_loc, out)


def _env_warnings(config: GatewayConfig, out: list[str]) -> None:
    for pname, provider in config.providers.items():
        for index, key in enumerate(provider.keys):
            if key.value.startswith(ENV_PREFIX) and resolve_env(key.value) is None:
                out.append(f"$.providers.{pname}.keys[{index}].value: environment variable {key.value[4:]} is not set")
            if not key.models:
                out.append(f"$.providers.{pname}.keys[{index}].models is empty: this key serves no model")
    for index, vk in enumerate(config.governance.virtual_keys):
        if vk.value and vk.value.startswith(ENV_PREFIX) and resolve_env(vk.value) is None:
            out.append(f"$.governance.virtual_keys[{index}].value: environment variable {vk.value[4:]} is not set")


def parse_config(raw: Any, source: str = "config") -> LoadedConfig:
    if not isinstance(raw, dict):
        raise ConfigError(source, [ConfigIssue("$", "the top level must be a JSON object")])
    warnings: list[str] = []
    _convert_legacy(raw, source, warnings)
    if raw.get("version") == 1:
        _apply_v1_semantics(raw)
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, validation_issues(exc)) from None
    _unknown_fields(config, (), warnings)
    _env_warnings(config, warnings)
    return LoadedConfig(config=config, warnings=warnings)


def load_config_file(path: Path) -> LoadedConfig:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [ConfigIssue("$", f"cannot read file: {exc.strerror}")]) from None
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(str(path), [ConfigIssue("$", f"invalid JSON: {exc}")]) from None
    return parse_config(raw, str(path))
