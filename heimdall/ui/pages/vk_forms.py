"""The virtual-key form: what the admin typed, and the ``provider_configs`` / ``mcp_configs`` built from it.

One row per configured provider (checkbox ``provider`` plus ``models.<provider>`` and ``keys.<provider>``)
and per MCP client (checkbox ``mcp`` plus ``tools.<client id>``). Rules the form cannot show, for
providers or MCP clients that no longer exist, are kept as they are when the key is saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from heimdall.api.virtual_keys import VirtualKeyView
from heimdall.ui.form_errors import Location
from heimdall.ui.guard import SubmittedForm
from heimdall.ui.pages.provider_forms import split_list


@dataclass(frozen=True)
class ClientRef:
    """An MCP client as the form lists it."""

    id: str
    name: str


@dataclass
class ProviderRule:
    provider: str
    allowed: bool = False
    models: str = "*"
    keys: str = "*"
    #: The stored rule's weight, kept on save (the form does not edit it).
    weight: float | None = None


@dataclass
class MCPRule:
    client: ClientRef
    allowed: bool = False
    tools: str = "*"


def _names_client(entry: dict[str, Any], client: ClientRef) -> bool:
    """A stored ``mcp_configs`` entry is about a client by its id, else by its name (as the gateway reads it)."""
    if entry.get("mcp_client_id"):
        return bool(entry["mcp_client_id"] == client.id)
    return bool(entry.get("mcp_client_name") == client.name)


@dataclass
class VKFields:
    name: str = ""
    description: str = ""
    can_assert_user_ids: bool = False
    providers: list[ProviderRule] = field(default_factory=list)
    mcp: list[MCPRule] = field(default_factory=list)
    #: Stored rules for providers and MCP clients that do not exist (any more); saved unchanged.
    kept_providers: list[dict[str, Any]] = field(default_factory=list)
    kept_mcp: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def blank(cls, providers: Sequence[str], clients: Sequence[ClientRef]) -> VKFields:
        return cls(providers=[ProviderRule(name) for name in providers], mcp=[MCPRule(client) for client in clients])

    @classmethod
    def from_view(cls, view: VirtualKeyView, providers: Sequence[str], clients: Sequence[ClientRef]) -> VKFields:
        fields = cls(name=view.name, description=view.description, can_assert_user_ids=view.can_assert_user_ids)
        stored = {str(pc.get("provider")): pc for pc in view.provider_configs}
        # The key's own provider order decides which provider serves a bare model name: keep it first.
        for name in [*(name for name in stored if name in providers), *(n for n in providers if n not in stored)]:
            pc = stored.get(name)
            if pc is None:
                fields.providers.append(ProviderRule(name))
            else:
                models, keys = pc.get("allowed_models") or [], pc.get("key_ids") or []
                weight = pc.get("weight")
                fields.providers.append(
                    ProviderRule(
                        name, True, "\n".join(models), "\n".join(keys), float(weight) if weight is not None else None
                    )
                )
        fields.kept_providers = [pc for name, pc in stored.items() if name not in providers]
        for client in clients:
            entry = next((e for e in view.mcp_configs if _names_client(e, client)), None)
            tools = "\n".join(entry.get("tools_to_execute") or []) if entry else "*"
            fields.mcp.append(MCPRule(client, entry is not None, tools))
        fields.kept_mcp = [e for e in view.mcp_configs if not any(_names_client(e, c) for c in clients)]
        return fields

    @classmethod
    def from_form(
        cls,
        form: SubmittedForm,
        providers: Sequence[str],
        clients: Sequence[ClientRef],
        stored: VirtualKeyView | None = None,
    ) -> VKFields:
        """The submitted fields, in the order the form listed them (hidden ``provider_order``)."""
        fields = cls.from_view(stored, providers, clients) if stored else cls.blank(providers, clients)
        fields.name, fields.description = form.text("name"), form.text("description")
        fields.can_assert_user_ids = form.flag("can_assert_user_ids")
        checked = set(form.texts("provider"))
        for rule in fields.providers:
            rule.allowed = rule.provider in checked
            rule.models, rule.keys = form.text(f"models.{rule.provider}"), form.text(f"keys.{rule.provider}")
        checked_clients = set(form.texts("mcp"))
        for mcp_rule in fields.mcp:
            mcp_rule.allowed = mcp_rule.client.id in checked_clients
            mcp_rule.tools = form.text(f"tools.{mcp_rule.client.id}")
        return fields

    def provider_configs(self) -> list[dict[str, Any]]:
        configs: list[dict[str, Any]] = []
        for rule in self.providers:
            if rule.allowed:
                config: dict[str, Any] = {
                    "provider": rule.provider,
                    "allowed_models": split_list(rule.models),
                    "key_ids": split_list(rule.keys),
                }
                if rule.weight is not None:
                    config["weight"] = rule.weight
                configs.append(config)
        return [*configs, *self.kept_providers]

    def mcp_configs(self) -> list[dict[str, Any]]:
        configs = [
            {"mcp_client_id": r.client.id, "mcp_client_name": r.client.name, "tools_to_execute": split_list(r.tools)}
            for r in self.mcp
            if r.allowed
        ]
        return [*configs, *self.kept_mcp]

    def body(self) -> dict[str, Any]:
        """The fields of ``VirtualKeyConfig`` / ``VirtualKeyUpdate`` this form edits."""
        return {
            "name": self.name,
            "description": self.description,
            "provider_configs": self.provider_configs(),
            "mcp_configs": self.mcp_configs(),
            "can_assert_user_ids": self.can_assert_user_ids,
        }

    def field_for(self, loc: Location) -> str | None:
        """The form field for a problem at ``loc`` inside the body."""
        head = loc[0] if loc else None
        if head in ("name", "description"):
            return str(head)
        index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
        if head == "provider_configs" and index is not None:
            allowed = [rule.provider for rule in self.providers if rule.allowed]
            if index < len(allowed):
                return f"keys.{allowed[index]}" if loc[2:3] == ("key_ids",) else f"models.{allowed[index]}"
        if head == "mcp_configs" and index is not None:
            clients = [rule.client.id for rule in self.mcp if rule.allowed]
            if index < len(clients):
                return f"tools.{clients[index]}"
        return None
