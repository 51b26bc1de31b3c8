"""Which upstream tools, prompts and resources a caller sees, under which names.

Tools and prompts are exposed as ``<client>-<name>`` (reference.md §8). A caller sees a tool when
all of these allow it:

1. the client's own ``tools_to_execute``;
2. the caller's virtual key: its ``mcp_configs`` row for the client (names bare or prefixed), or,
   for clients with ``allow_on_all_virtual_keys`` and no row, the client's list; no key means
   every client (the "global" view, used when inference auth is not enforced);
3. the request headers ``x-bf-mcp-include-clients`` (client names) and ``x-bf-mcp-include-tools``
   (``<client>-<tool>``, ``<client>-*`` or ``*``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import mcp.types as types

from heimdall.config.allowlists import AllowList
from heimdall.governance.virtual_keys import VirtualKeyRuntime
from heimdall.mcp.runtime import MCPClientSpec, ToolNotFoundError

SEPARATOR = "-"


class CatalogSource(Protocol):
    """What the catalog needs from the upstream side: each client's current lists."""

    def tools(self, client_id: str) -> list[types.Tool]: ...

    def prompts(self, client_id: str) -> list[types.Prompt]: ...

    def resources(self, client_id: str) -> list[types.Resource]: ...


@dataclass(frozen=True, slots=True)
class Filters:
    """Per-request narrowing from the ``x-bf-mcp-include-*`` headers (None: no narrowing)."""

    clients: frozenset[str] | None = None
    tools: frozenset[str] | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Filters:
        def split(value: str | None) -> frozenset[str] | None:
            if value is None:
                return None
            return frozenset(part.strip() for part in value.split(",") if part.strip())

        return cls(
            clients=split(headers.get("x-bf-mcp-include-clients")),
            tools=split(headers.get("x-bf-mcp-include-tools")),
        )

    def allows_client(self, name: str) -> bool:
        return self.clients is None or name in self.clients

    def allows_tool(self, client: str, tool: str) -> bool:
        if self.tools is None:
            return True
        return bool({"*", f"{client}{SEPARATOR}*", f"{client}{SEPARATOR}{tool}"} & self.tools)


@dataclass(frozen=True, slots=True)
class CatalogTool:
    spec: MCPClientSpec
    upstream_name: str
    tool: types.Tool

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def auto_execute(self) -> bool:
        return self.spec.tools_to_auto_execute.allows(self.upstream_name)


@dataclass(frozen=True, slots=True)
class CatalogPrompt:
    spec: MCPClientSpec
    upstream_name: str
    prompt: types.Prompt


@dataclass(frozen=True, slots=True)
class CatalogResource:
    spec: MCPClientSpec
    resource: types.Resource


def exposed_name(client: str, name: str) -> str:
    return f"{client}{SEPARATOR}{name}"


def _vk_rules(vk: VirtualKeyRuntime, specs: Iterable[MCPClientSpec]) -> dict[str, AllowList]:
    """Client id -> the tool allow-list the key grants (reference.md §8: explicit rows win)."""
    by_name = {spec.name: spec for spec in specs}
    by_id = {spec.id: spec for spec in by_name.values()}
    rules: dict[str, AllowList] = {}
    for row in vk.mcp_configs:
        spec = by_id.get(str(row.get("mcp_client_id") or "")) or by_name.get(str(row.get("mcp_client_name") or ""))
        if spec is None:
            continue
        prefix = spec.name + SEPARATOR
        names = [n[len(prefix) :] if n.startswith(prefix) else n for n in row.get("tools_to_execute") or []]
        rules[spec.id] = AllowList(names)
    for spec in by_name.values():
        if spec.allow_on_all_virtual_keys and spec.id not in rules:
            rules[spec.id] = AllowList(["*"])
    return rules


class Catalog:
    """A per-caller view over the configured clients and what their upstreams currently offer."""

    def __init__(self, source: CatalogSource) -> None:
        self.source = source
        self.specs: dict[str, MCPClientSpec] = {}

    def update_specs(self, specs: Iterable[MCPClientSpec]) -> None:
        self.specs = {spec.id: spec for spec in specs}

    def spec_by_name(self, name: str) -> MCPClientSpec | None:
        for spec in self.specs.values():
            if spec.name == name:
                return spec
        return None

    def _clients(self, vk: VirtualKeyRuntime | None, filters: Filters) -> list[tuple[MCPClientSpec, AllowList]]:
        specs = [s for s in self.specs.values() if s.status != "pending_verification" and filters.allows_client(s.name)]
        if vk is None:
            return [(spec, AllowList(["*"])) for spec in specs]
        rules = _vk_rules(vk, specs)
        return [(spec, rules[spec.id]) for spec in specs if spec.id in rules]

    def tools(self, vk: VirtualKeyRuntime | None, filters: Filters = Filters()) -> list[CatalogTool]:
        result: list[CatalogTool] = []
        for spec, granted in self._clients(vk, filters):
            for tool in self.source.tools(spec.id):
                name = tool.name
                if spec.tools_to_execute.allows(name) and granted.allows(name) and filters.allows_tool(spec.name, name):
                    exposed = tool.model_copy(update={"name": exposed_name(spec.name, name)})
                    result.append(CatalogTool(spec=spec, upstream_name=name, tool=exposed))
        return result

    def tool(self, exposed: str, vk: VirtualKeyRuntime | None, filters: Filters = Filters()) -> CatalogTool:
        """The tool the caller may use under this name.

        Raises:
            ToolNotFoundError: unknown, or not allowed for this caller (the two are not told apart).
        """
        for candidate in self.tools(vk, filters):
            if candidate.name == exposed:
                return candidate
        raise ToolNotFoundError(f"tool {exposed!r} is not available to this caller")

    def prompts(self, vk: VirtualKeyRuntime | None, filters: Filters = Filters()) -> list[CatalogPrompt]:
        result: list[CatalogPrompt] = []
        for spec, _granted in self._clients(vk, filters):
            for prompt in self.source.prompts(spec.id):
                exposed = prompt.model_copy(update={"name": exposed_name(spec.name, prompt.name)})
                result.append(CatalogPrompt(spec=spec, upstream_name=prompt.name, prompt=exposed))
        return result

    def prompt(self, exposed: str, vk: VirtualKeyRuntime | None, filters: Filters = Filters()) -> CatalogPrompt:
        for candidate in self.prompts(vk, filters):
            if candidate.prompt.name == exposed:
                return candidate
        raise ToolNotFoundError(f"prompt {exposed!r} is not available to this caller")

    def resources(self, vk: VirtualKeyRuntime | None, filters: Filters = Filters()) -> list[CatalogResource]:
        """Resources keep their upstream URIs (clients show and fetch them as such); the first client wins a clash."""
        seen: set[str] = set()
        result: list[CatalogResource] = []
        for spec, _granted in self._clients(vk, filters):
            for resource in self.source.resources(spec.id):
                uri = str(resource.uri)
                if uri in seen:
                    continue
                seen.add(uri)
                exposed = resource.model_copy(update={"name": exposed_name(spec.name, resource.name)})
                result.append(CatalogResource(spec=spec, resource=exposed))
        return result

    def resource(self, uri: str, vk: VirtualKeyRuntime | None, filters: Filters = Filters()) -> CatalogResource:
        for candidate in self.resources(vk, filters):
            if str(candidate.resource.uri) == uri:
                return candidate
        raise ToolNotFoundError(f"resource {uri!r} is not available to this caller")
