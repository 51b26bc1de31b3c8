"""Per-user OAuth settings: lifetimes, identity options and the OIDC login (config.json ``per_user_oauth``).

Lifetimes follow reference.md §3 where it sets them (flows 15 min, codes 5 min) and RFC 9700 §2.2.2
elsewhere: short access tokens, rotating refresh tokens with an absolute lifetime.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class OIDCLogin(BaseModel):
    """An OpenID Connect provider that authenticates user ids on the consent page."""

    model_config = ConfigDict(extra="forbid")
    issuer: str = Field(description="Issuer URL (metadata from <issuer>/.well-known/openid-configuration).")
    client_id: str
    client_secret: str | None = Field(default=None, description="Literal or env.NAME; omit for a public client.")
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    user_id_claim: str = Field(default="email", description="Claim used as the user id (falls back to sub).")
    display_name: str = "Single sign-on"


class PerUserOAuthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_token_ttl: int = Field(default=3600, ge=60, le=86_400, description="Seconds an /mcp access token lives.")
    refresh_token_ttl: int = Field(
        default=30 * 86_400, ge=3600, le=365 * 86_400, description="Absolute lifetime of a grant's refresh tokens."
    )
    code_ttl: int = Field(default=300, ge=30, le=600, description="Authorization code lifetime (single use).")
    flow_ttl: int = Field(default=900, ge=60, le=3600, description="Consent flow and upstream login lifetime.")
    handoff_ttl: int = Field(default=900, ge=60, le=3600, description="Lifetime of an upstream login link.")
    sweep_interval: int = Field(default=60, ge=1, le=86_400, description="Seconds between housekeeping sweeps.")
    allow_self_declared_user_ids: bool = Field(
        default=False, description="Let the consent page accept a typed user id without authentication (unsafe)."
    )
    allow_private_cimd_hosts: bool = Field(
        default=False, description="Fetch Client ID Metadata Documents from private or loopback addresses."
    )
    scopes_supported: list[str] = Field(default_factory=lambda: ["mcp:read", "mcp:write"])
    oidc: OIDCLogin | None = None

    @model_validator(mode="after")
    def _ttls(self) -> PerUserOAuthConfig:
        if self.refresh_token_ttl <= self.access_token_ttl:
            raise ValueError("refresh_token_ttl must be longer than access_token_ttl")
        return self
