"""What the MCP client API shows and accepts: redacted views, validation errors with JSON paths, edits.

Secrets never leave through the API: header values and stdio environment values are replaced by
``"<redacted>"`` unless they are ``env.NAME`` references, and an OAuth client secret is always
redacted. An edit that sends ``"<redacted>"`` back keeps the stored value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import mcp.types as types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from heimdall.config.allowlists import validate_allowlist
from heimdall.config.loader import ENV_PREFIX, json_path
from heimdall.crypto import SecretBox
from heimdall.errors import BadRequest
from heimdall.mcp.config import MCPClientConfig, OAuthSettings, StdioConfig
from heimdall.mcp.runtime import ClientState
from heimdall.store import mcp_repos
from heimdall.store.mcp_models import MCPClientRow

REDACTED = "<redacted>"
CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
#: Errors whose text the reference system defines; they are sent as the whole message.
REFERENCE_MESSAGES = frozenset({"OAuth configuration is required when auth_type is 'per_user_oauth'"})
#: Fields fixed at creation (reference.md §2.6): delete the client and add it again to change them.
IMMUTABLE = ("connection_type", "connection_string", "auth_type", "oauth_config_id", "stdio_config", "oauth_config")
MUTABLE = (
    "name",
    "tools_to_execute",
    "tools_to_auto_execute",
    "headers",
    "allowed_extra_headers",
    "is_ping_available",
    "tool_sync_interval",
    "allow_on_all_virtual_keys",
)


class UpstreamStatus(Protocol):
    """What the API reads from the upstream side about one client (``UpstreamManager.status``)."""

    @property
    def state(self) -> ClientState: ...

    @property
    def reason(self) -> str | None: ...

    @property
    def tools(self) -> Sequence[types.Tool]: ...


# --- validation --------------------------------------------------------------------------------


def _path(err: Mapping[str, Any]) -> str:
    """The JSON path of a pydantic error; model-level errors name their field first (``"connection_string is..."``)."""
    loc = tuple(err.get("loc") or ())
    if loc:
        return json_path(loc)
    message = str(err.get("msg", "")).removeprefix("Value error, ")
    if message.startswith("OAuth configuration"):
        return "$.oauth_config"
    if message.startswith("auth_type 'headers'"):
        return "$.headers"
    first = message.split(" ", 1)[0]
    return f"$.{first}" if first in MCPClientConfig.model_fields else "$"


def invalid(exc: ValidationError, what: str = "MCP client") -> BadRequest:
    problems = [f"{_path(err)}: {str(err['msg']).removeprefix('Value error, ')}" for err in exc.errors()]
    messages = [str(err["msg"]).removeprefix("Value error, ") for err in exc.errors()]
    if len(messages) == 1 and messages[0] in REFERENCE_MESSAGES:
        return BadRequest(messages[0], param=_path(exc.errors()[0])[2:] or None, extra_fields={"errors": problems})
    return BadRequest(f"invalid {what}: " + "; ".join(problems), extra_fields={"errors": problems})


def parse_client(payload: Any) -> MCPClientConfig:
    """Validate a new client exactly as config.json's are.

    Raises:
        BadRequest: with one ``$.path: message`` entry per problem in ``extra_fields.errors``.
    """
    if not isinstance(payload, dict):
        raise BadRequest("invalid MCP client: $: must be a JSON object", extra_fields={"errors": ["$: not an object"]})
    try:
        config = MCPClientConfig.model_validate(payload)
    except ValidationError as exc:
        raise invalid(exc) from None
    if config.client_id is not None and not CLIENT_ID.match(config.client_id):
        problem = "$.client_id: 1-64 letters, digits, '_', '.', ':', '@' or '-'"
        raise BadRequest(f"invalid MCP client: {problem}", param="client_id", extra_fields={"errors": [problem]})
    return config


# --- views -------------------------------------------------------------------------------------


def redact(values: Mapping[str, str]) -> dict[str, str]:
    return {name: value if value.startswith(ENV_PREFIX) else REDACTED for name, value in values.items()}


def config_view(box: SecretBox, row: MCPClientRow) -> dict[str, Any]:
    config = mcp_repos.client_config(box, row)
    data = config.model_dump(mode="json", exclude={"headers", "stdio_config", "oauth_config"})
    data["headers"] = redact(config.headers)
    data["stdio_config"] = None
    if config.stdio_config is not None:
        data["stdio_config"] = {**config.stdio_config.model_dump(mode="json"), "envs": redact(config.stdio_config.envs)}
    data["oauth_config"] = None
    if config.oauth_config is not None:
        oauth = config.oauth_config.model_dump(mode="json")
        if oauth.get("client_secret"):
            oauth["client_secret"] = REDACTED
        data["oauth_config"] = oauth
    return data


def tool_view(tool: types.Tool) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description or "", "parameters": tool.input_schema}


@dataclass(frozen=True, slots=True)
class Observed:
    state: str
    reason: str | None
    tools: list[dict[str, Any]]


def observed(row: MCPClientRow, status: UpstreamStatus | None, *, running: bool) -> Observed:
    """The client's state: from the upstream side when it knows the client, else from the stored row."""
    if row.status == mcp_repos.PENDING_VERIFICATION:
        return Observed(ClientState.PENDING_VERIFICATION.value, "waiting for an admin's verification login", [])
    if status is None:
        if not running:
            return Observed(ClientState.DISCONNECTED.value, "the MCP gateway is not running", [])
        return Observed(ClientState.CONNECTING.value, None, [])
    return Observed(status.state.value, status.reason, [tool_view(tool) for tool in status.tools])


class ToolView(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any] = Field(description="The tool's input JSON Schema.")


class VKRuleView(BaseModel):
    virtual_key_id: str
    virtual_key_name: str
    tools_to_execute: list[str]


class MCPClientView(BaseModel):
    config: dict[str, Any] = Field(description="The client's MCPClientConfig; secrets are redacted.")
    tools: list[ToolView]
    state: str = Field(description="connected, connecting, disconnected, error, per_user or pending_verification")
    state_reason: str | None = None
    tool_count: int
    vk_configs: list[VKRuleView]


class MCPClientList(BaseModel):
    clients: list[MCPClientView]
    count: int
    total_count: int
    limit: int
    offset: int


def client_view(
    box: SecretBox,
    row: MCPClientRow,
    status: UpstreamStatus | None,
    vk_rules: Sequence[mcp_repos.VKClientRule],
    *,
    running: bool,
) -> MCPClientView:
    seen = observed(row, status, running=running)
    return MCPClientView(
        config=config_view(box, row),
        tools=[ToolView.model_validate(tool) for tool in seen.tools],
        state=seen.state,
        state_reason=seen.reason,
        tool_count=len(seen.tools),
        vk_configs=[
            VKRuleView(
                virtual_key_id=rule.virtual_key_id,
                virtual_key_name=rule.virtual_key_name,
                tools_to_execute=rule.tools_to_execute,
            )
            for rule in vk_rules
        ],
    )


# --- edits -------------------------------------------------------------------------------------


class VKClientConfig(BaseModel):
    """One virtual key's rule for this client; ``virtual_key_name`` is accepted (it is in the views) and ignored."""

    model_config = ConfigDict(extra="forbid")
    virtual_key_id: str = Field(min_length=1)
    virtual_key_name: str | None = None
    tools_to_execute: list[str] = Field(default_factory=list, description='Tools this key may use: ["*"], [] or names.')

    @field_validator("tools_to_execute")
    @classmethod
    def _tools(cls, value: list[str]) -> list[str]:
        return validate_allowlist(value)


class MCPClientUpdate(BaseModel):
    """``PUT /api/mcp/client/{id}``: omitted fields keep their values; the connection fields cannot change."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    tools_to_execute: list[str] | None = None
    tools_to_auto_execute: list[str] | None = None
    headers: dict[str, str] | None = Field(default=None, description='Replaces all headers; "<redacted>" keeps one.')
    allowed_extra_headers: list[str] | None = None
    is_ping_available: bool | None = None
    tool_sync_interval: int | None = None
    allow_on_all_virtual_keys: bool | None = None
    vk_configs: list[VKClientConfig] | None = Field(default=None, description="Replaces every virtual key's rule.")
    client_id: str | None = Field(default=None, description="Accepted when it is the client's own id.")
    connection_type: str | None = None
    connection_string: str | None = None
    auth_type: str | None = None
    oauth_config_id: str | None = None
    stdio_config: dict[str, Any] | None = None
    oauth_config: dict[str, Any] | None = None


def _unredacted(sent: Mapping[str, str], stored: Mapping[str, str], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in sent.items():
        if value == REDACTED:
            if name not in stored:
                raise BadRequest(f"{where}[{name!r}]: no stored value to keep", param=where.removeprefix("$."))
            out[name] = stored[name]
        else:
            out[name] = value
    return out


def _comparable(field: str, value: Any, current: MCPClientConfig) -> Any:
    """A sent immutable field in the stored form, so an unchanged (redacted) echo compares equal."""
    try:
        if field == "stdio_config" and isinstance(value, dict):
            stored = current.stdio_config.envs if current.stdio_config else {}
            sent = StdioConfig.model_validate(value)
            sent.envs = _unredacted(sent.envs, stored, "$.stdio_config.envs")
            return sent.model_dump()
        if field == "oauth_config" and isinstance(value, dict):
            sent_oauth = OAuthSettings.model_validate(value)
            if sent_oauth.client_secret in (None, REDACTED) and current.oauth_config is not None:
                sent_oauth.client_secret = current.oauth_config.client_secret
            return sent_oauth.model_dump()
    except ValidationError:
        return value
    return value


def _stored(field: str, current: MCPClientConfig) -> Any:
    value = getattr(current, field)
    return value.model_dump() if isinstance(value, BaseModel) else value


def merged_config(current: MCPClientConfig, update: MCPClientUpdate) -> MCPClientConfig:
    """Apply an edit to the stored configuration and validate the result as a whole.

    Raises:
        BadRequest: an immutable field was changed, or the result is not a valid client.
    """
    sent = update.model_dump(exclude_unset=True)
    if sent.get("client_id") not in (None, current.client_id):
        raise BadRequest("client_id cannot be changed", param="client_id")
    for field in IMMUTABLE:
        if sent.get(field) is not None and _comparable(field, sent[field], current) != _stored(field, current):
            raise BadRequest(f"{field} cannot be changed; delete the MCP client and add it again", param=field)
    data = current.model_dump()
    for field in MUTABLE:
        if sent.get(field) is not None:
            data[field] = sent[field]
    if sent.get("headers") is not None:
        data["headers"] = _unredacted(sent["headers"], current.headers, "$.headers")
    try:
        return MCPClientConfig.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None
