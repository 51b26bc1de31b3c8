"""Process settings: command-line options and HEIMDALL_* environment variables.

Settings describe *how the process runs* (where it listens, where it stores things, which
secrets it uses). What the gateway *serves* (providers, keys, MCP servers) lives in the store,
seeded from ``config.json``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Everything the process needs before it can open the store."""

    model_config = SettingsConfigDict(env_prefix="HEIMDALL_", extra="ignore")

    app_dir: Path = Field(default=Path("data"), description="Directory for the SQLite store and generated keys.")
    config: Path | None = Field(default=None, description="config.json that seeds the store on start.")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    db_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in the app dir.")
    public_url: str | None = Field(default=None, description="Externally visible base URL; default from host/port.")
    encryption_key: SecretStr | None = Field(
        default=None,
        description="Base64url 32-byte key for secrets at rest; generated into the app dir if unset.",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Admin credential for /api; generated and printed on first run if unset."
    )
    redis_url: str | None = Field(default=None, description="Redis for shared state across processes.")
    workers: int = Field(default=1, ge=1, le=64)
    max_request_body_bytes: int = Field(default=10 * MIB, ge=1024)
    config_poll_seconds: float = Field(
        default=2.0, gt=0, description="How often a process checks whether another one changed the store."
    )
    log_level: str = "info"
    access_log: bool = False
    request_log_enabled: bool = Field(
        default=True, description="Record every inference and MCP tool request for the Logs page."
    )
    request_log_max_rows: int = Field(default=10_000, ge=1, description="Keep at most this many request log rows.")
    request_log_max_age_hours: float = Field(
        default=168, gt=0, description="Delete request log rows older than this many hours."
    )
    request_log_bodies: bool = Field(
        default=False, description="Also store request and response bodies in the request log (first 8 KiB of each)."
    )

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite+aiosqlite:///{(self.app_dir / 'heimdall.db').resolve()}"

    @property
    def base_url(self) -> str:
        """The public base URL (W15: never taken from the Host header)."""
        if self.public_url:
            return self.public_url
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"
