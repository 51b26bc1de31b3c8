"""Routes each upstream call's credential question to the resolver of the client's ``auth_type``."""

from __future__ import annotations

from heimdall.mcp.runtime import Caller, CredentialResolver, CredentialUnavailable, MCPClientSpec, StaticCredentials


class CredentialRouter:
    """The single place that decides which credential an upstream call uses (issue #3's seam)."""

    def __init__(self, resolvers: dict[str, CredentialResolver] | None = None) -> None:
        static = StaticCredentials()
        self.resolvers: dict[str, CredentialResolver] = {"none": static, "headers": static, **(resolvers or {})}

    def register(self, auth_type: str, resolver: CredentialResolver) -> None:
        self.resolvers[auth_type] = resolver

    def _resolver(self, spec: MCPClientSpec) -> CredentialResolver:
        resolver = self.resolvers.get(spec.auth_type)
        if resolver is None:
            raise CredentialUnavailable(f"{spec.name}: auth_type {spec.auth_type!r} is not available")
        return resolver

    async def headers_for(self, spec: MCPClientSpec, caller: Caller | None) -> dict[str, str]:
        return await self._resolver(spec).headers_for(spec, caller)

    async def unauthorized(self, spec: MCPClientSpec, caller: Caller | None, www_authenticate: str | None) -> bool:
        return await self._resolver(spec).unauthorized(spec, caller, www_authenticate)
