"""The provider and provider-key forms: what the admin typed, and the management-API bodies built from it.

Field names on the page: ``name``, ``api_format``, ``base_url``, ``timeout``, ``max_retries``,
``backoff_initial``, ``backoff_max``, ``extra_headers`` for the provider; ``key_name``, ``key_value``,
``key_models``, ``key_weight``, ``azure_endpoint``, ``azure_api_version`` and the alias rows
(``alias_name`` / ``alias_target``, repeated) for a key. Problems are reported at those names, an
alias row's at ``alias.<row number>``. A key's value is never put back into a form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from heimdall.api.providers import (
    InvalidProvider,
    KeyUpdate,
    KeyView,
    ProviderCreate,
    ProviderUpdate,
    ProviderView,
)
from heimdall.config.model import KNOWN_PROVIDERS, ProviderKeyConfig
from heimdall.ui.form_errors import FormErrors, Location
from heimdall.ui.guard import SubmittedForm

API_FORMATS = [
    ("", "Built in (from the name)"),
    ("openai", "OpenAI-compatible"),
    ("anthropic", "Anthropic"),
    ("azure", "Azure OpenAI"),
]
#: Blank alias rows below the filled ones, for adding aliases without JavaScript.
BLANK_ALIAS_ROWS = 3
_NETWORK_FIELDS = {
    "base_url": "base_url",
    "default_request_timeout_in_seconds": "timeout",
    "max_retries": "max_retries",
    "retry_backoff_initial": "backoff_initial",
    "retry_backoff_max": "backoff_max",
    "extra_headers": "extra_headers",
}
_KEY_FIELDS = {
    "id": "key_name",
    "name": "key_name",
    "value": "key_value",
    "models": "key_models",
    "weight": "key_weight",
}
_LIST_SEPARATORS = re.compile(r"[\n,]")


def split_list(text: str) -> list[str]:
    """Entries one per line or comma separated; blank entries are dropped."""
    return [part.strip() for part in _LIST_SEPARATORS.split(text) if part.strip()]


def number_text(value: object) -> str:
    """30.0 -> "30", 0.5 -> "0.5": numbers as a person would type them."""
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass
class AliasRow:
    alias: str = ""
    target: str = ""


@dataclass
class KeyFields:
    """A key form's fields as shown (a new key starts serving every model)."""

    name: str = ""
    models: str = "*"
    weight: str = "1"
    aliases: list[AliasRow] = field(default_factory=list)
    azure_endpoint: str = ""
    azure_api_version: str = ""

    def rows(self) -> list[AliasRow]:
        return [*self.aliases, *(AliasRow() for _ in range(BLANK_ALIAS_ROWS))]

    @classmethod
    def from_view(cls, key: KeyView) -> KeyFields:
        azure = key.azure_key_config or {}
        return cls(
            name=key.name,
            models="\n".join(key.models),
            weight=number_text(key.weight),
            aliases=[AliasRow(alias, target) for alias, target in key.aliases.items()],
            azure_endpoint=str(azure.get("endpoint") or ""),
            azure_api_version=str(azure.get("api_version") or ""),
        )

    @classmethod
    def from_form(cls, form: SubmittedForm) -> KeyFields:
        names, targets = form.texts("alias_name"), form.texts("alias_target")
        rows = [AliasRow(alias, target) for alias, target in zip(names, targets, strict=False)]
        return cls(
            name=form.text("key_name"),
            models=form.text("key_models"),
            weight=form.text("key_weight"),
            aliases=[row for row in rows if row.alias or row.target],
            azure_endpoint=form.text("azure_endpoint"),
            azure_api_version=form.text("azure_api_version"),
        )

    def payload(self, value: str, errors: FormErrors) -> dict[str, Any]:
        """The key's JSON body (``ProviderKeyConfig`` / ``KeyUpdate``); an empty ``value`` is left out."""
        body: dict[str, Any] = {"models": split_list(self.models), "aliases": self._alias_map(errors)}
        if self.name:
            body["name"] = self.name
        if value:
            body["value"] = value
        if self.weight:
            body["weight"] = self.weight
        if self.azure_endpoint or self.azure_api_version:
            azure = {"endpoint": self.azure_endpoint} if self.azure_endpoint else {}
            if self.azure_api_version:
                azure["api_version"] = self.azure_api_version
            body["azure_key_config"] = azure
        return body

    def _alias_map(self, errors: FormErrors) -> dict[str, str]:
        aliases: dict[str, str] = {}
        for index, row in enumerate(self.aliases):
            if row.alias in aliases:
                errors.add(f"alias.{index}", f"alias {row.alias!r} appears twice")
            else:
                aliases[row.alias] = row.target
        return aliases

    def field_for(self, loc: Location) -> str | None:
        """The form field for a problem at ``loc`` inside a key body."""
        head = loc[0] if loc else None
        if head == "aliases" and len(loc) > 1:
            rows = [index for index, row in enumerate(self.aliases) if row.alias == loc[1]]
            return f"alias.{rows[0]}" if rows else "aliases"
        if head == "aliases":
            return "aliases"
        if head == "azure_key_config":
            return "azure_api_version" if loc[1:2] == ("api_version",) else "azure_endpoint"
        return _KEY_FIELDS.get(str(head))


@dataclass
class ProviderFields:
    """The provider form's fields as shown (defaults are NetworkConfig's)."""

    name: str = ""
    api_format: str = ""
    base_url: str = ""
    timeout: str = "30"
    max_retries: str = "1"
    backoff_initial: str = "200"
    backoff_max: str = "2000"
    extra_headers: str = ""

    @classmethod
    def from_view(cls, view: ProviderView) -> ProviderFields:
        network = view.network_config
        built_in = KNOWN_PROVIDERS.get(view.name)
        headers = network.get("extra_headers") or {}
        return cls(
            name=view.name,
            api_format="" if built_in and built_in[0] == view.kind else view.kind,
            base_url=str(network.get("base_url") or ""),
            timeout=number_text(network.get("default_request_timeout_in_seconds", 30)),
            max_retries=number_text(network.get("max_retries", 1)),
            backoff_initial=number_text(network.get("retry_backoff_initial", 200)),
            backoff_max=number_text(network.get("retry_backoff_max", 2000)),
            extra_headers="\n".join(f"{name}: {value}" for name, value in headers.items()),
        )

    @classmethod
    def from_form(cls, form: SubmittedForm) -> ProviderFields:
        return cls(
            name=form.text("name"),
            api_format=form.text("api_format"),
            base_url=form.text("base_url"),
            timeout=form.text("timeout"),
            max_retries=form.text("max_retries"),
            backoff_initial=form.text("backoff_initial"),
            backoff_max=form.text("backoff_max"),
            extra_headers=form.text("extra_headers"),
        )

    def custom_provider_config(self) -> dict[str, str] | None:
        """Set only when the format differs from what the name already implies."""
        built_in = KNOWN_PROVIDERS.get(self.name)
        if not self.api_format or (built_in and built_in[0] == self.api_format):
            return None
        return {"base_provider_type": self.api_format}

    def network_config(self, errors: FormErrors, stored: dict[str, Any] | None = None) -> dict[str, Any]:
        """The network config typed in, over what is stored (fields the form does not show are kept)."""
        config = dict(stored or {})
        config["base_url"] = self.base_url or None
        typed = {
            "default_request_timeout_in_seconds": self.timeout,
            "max_retries": self.max_retries,
            "retry_backoff_initial": self.backoff_initial,
            "retry_backoff_max": self.backoff_max,
        }
        for name, text in typed.items():
            if text:
                config[name] = text
            else:
                config.pop(name, None)
        config["extra_headers"] = self._headers(errors)
        return config

    def _headers(self, errors: FormErrors) -> dict[str, str]:
        headers: dict[str, str] = {}
        for line in self.extra_headers.splitlines():
            if not line.strip():
                continue
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                errors.add("extra_headers", f"write each header as Name: value ({line.strip()[:40]!r} is not)")
                continue
            headers[name.strip()] = value.strip()
        return headers


def field_for_provider(loc: Location, key: KeyFields | None) -> str | None:
    """The form field for a problem at ``loc`` inside a provider body (``ProviderCreate`` or the config file's)."""
    if not loc or loc[0] == "name":
        return "name"
    head = loc[0]
    if head == "custom_provider_config":
        return "api_format"
    if head == "network_config":
        return _NETWORK_FIELDS.get(str(loc[1]), "base_url") if len(loc) > 1 else "base_url"
    if head == "keys" and key is not None:
        return key.field_for(loc[2:])
    return None


def friendly(loc: Location, message: str, name: str) -> str:
    """Say what to do in the form's words, where the config file's message names JSON fields."""
    if loc == ("custom_provider_config",):
        return f"{name!r} is not a built-in provider name: choose its API format (and give its base URL)."
    if loc == ("network_config", "base_url") and "needs a base_url" in message:
        return "Enter the base URL: this provider has no built-in address."
    if loc[-1:] == ("azure_key_config",):
        return "Azure keys need the endpoint of the Azure OpenAI resource."
    return message


def add_provider_issues(errors: FormErrors, exc: InvalidProvider, name: str, key: KeyFields | None) -> None:
    for loc, message in exc.locations:
        errors.add(field_for_provider(loc, key), friendly(loc, message, name))


def provider_create_body(
    provider: ProviderFields, key: KeyFields, key_value: str, errors: FormErrors
) -> ProviderCreate | None:
    """The ``POST /api/providers`` body, or None with ``errors`` filled in."""
    if not key_value:
        errors.add("key_value", "Enter the provider's API key, or env.NAME to read it from the environment.")
    body = {
        "name": provider.name,
        "custom_provider_config": provider.custom_provider_config(),
        "network_config": provider.network_config(errors),
        "keys": [key.payload(key_value, errors)],
    }
    try:
        parsed = ProviderCreate.model_validate(body)
    except ValidationError as exc:
        errors.add_validation(exc, lambda loc: field_for_provider(loc, key))
        return None
    return None if errors else parsed


def provider_update_body(provider: ProviderFields, stored: dict[str, Any], errors: FormErrors) -> ProviderUpdate | None:
    body = {
        "network_config": provider.network_config(errors, stored),
        "custom_provider_config": provider.custom_provider_config(),
    }
    try:
        parsed = ProviderUpdate.model_validate(body)
    except ValidationError as exc:
        errors.add_validation(exc, lambda loc: field_for_provider(loc, None))
        return None
    return None if errors else parsed


def key_create_body(key: KeyFields, key_value: str, errors: FormErrors) -> ProviderKeyConfig | None:
    if not key_value:
        errors.add("key_value", "Enter the API key, or env.NAME to read it from the environment.")
    try:
        parsed = ProviderKeyConfig.model_validate(key.payload(key_value, errors))
    except ValidationError as exc:
        errors.add_validation(exc, key.field_for)
        return None
    return None if errors else parsed


def key_update_body(key: KeyFields, key_value: str, errors: FormErrors) -> KeyUpdate | None:
    """An empty value keeps the stored key (``KeyUpdate`` leaves ``value`` out)."""
    try:
        parsed = KeyUpdate.model_validate(key.payload(key_value, errors))
    except ValidationError as exc:
        errors.add_validation(exc, key.field_for)
        return None
    return None if errors else parsed
