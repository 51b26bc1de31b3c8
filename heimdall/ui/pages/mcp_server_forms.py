"""The add and edit forms of MCP servers: what they show, how a post becomes an API body, and errors.

A post is turned into the management API's own body (``MCPClientConfig`` JSON for an add,
``MCPClientUpdate`` for an edit) and handed to its handlers, so the UI validates nothing the API
does not. Their errors name JSON paths (``$.stdio_config.command: …``), which are mapped back to
the form's fields. Secret values (header and environment values, the OAuth client secret) are
never put back into a form: after an error the admin types them again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from heimdall.api.mcp_client_views import REDACTED, MCPClientUpdate, MCPClientView
from heimdall.errors import GatewayError
from heimdall.ui.guard import SubmittedForm

#: Empty header and environment rows the add form offers (more appear after an error that kept more).
BLANK_ROWS = 3

FIELD_LABELS = {
    "name": "Name",
    "connection_type": "Connection",
    "connection_string": "Server URL",
    "stdio_command": "Command",
    "stdio_args": "Arguments",
    "stdio_env": "Environment",
    "stdio_cwd": "Working directory",
    "auth_type": "Authentication",
    "headers": "Headers",
    "oauth": "OAuth",
    "oauth_client_id": "Client ID",
    "oauth_client_secret": "Client secret",
    "oauth_scopes": "Scopes",
    "oauth_authorize_url": "Authorization URL",
    "oauth_token_url": "Token URL",
    "oauth_registration_url": "Registration URL",
    "tools": "Allowed tools",
    "auto_tools": "Automatic tools",
    "allowed_extra_headers": "Forwarded request headers",
    "tool_sync_interval": "Tool refresh interval",
    "is_ping_available": "Health checks",
    "allow_on_all_virtual_keys": "Virtual keys",
}
#: JSON paths of the API's errors (without ``$.``, list indexes and map keys) → form fields.
_PATH_FIELDS = {
    "name": "name",
    "client_id": "name",
    "connection_type": "connection_type",
    "connection_string": "connection_string",
    "stdio_config": "stdio_command",
    "stdio_config.command": "stdio_command",
    "stdio_config.args": "stdio_args",
    "stdio_config.envs": "stdio_env",
    "stdio_config.cwd": "stdio_cwd",
    "auth_type": "auth_type",
    "headers": "headers",
    "oauth_config": "oauth",
    "oauth_config.client_id": "oauth_client_id",
    "oauth_config.client_secret": "oauth_client_secret",
    "oauth_config.scopes": "oauth_scopes",
    "oauth_config.authorize_url": "oauth_authorize_url",
    "oauth_config.token_url": "oauth_token_url",
    "oauth_config.registration_url": "oauth_registration_url",
    "tools_to_execute": "tools",
    "tools_to_auto_execute": "auto_tools",
    "allowed_extra_headers": "allowed_extra_headers",
    "tool_sync_interval": "tool_sync_interval",
    "is_ping_available": "is_ping_available",
    "allow_on_all_virtual_keys": "allow_on_all_virtual_keys",
}


class FieldErrors(dict[str, str]):
    """Messages by form field; a field without one reads as None in a template (``errors.name``)."""

    def __missing__(self, key: str) -> None:
        return None


class FormProblems(Exception):
    """The form cannot become an API body; ``errors`` maps form fields to messages."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def names(text: str) -> list[str]:
    """Names typed one per line or separated by commas or spaces, without repeats."""
    seen: dict[str, None] = {}
    for part in re.split(r"[\s,]+", text):
        if part:
            seen.setdefault(part, None)
    return list(seen)


def _sync_interval(text: str, problems: dict[str, str]) -> int:
    try:
        return int(text or "0")
    except ValueError:
        problems["tool_sync_interval"] = "Enter a whole number of seconds (0 uses the gateway's default)."
        return 0


def _pairs(form: SubmittedForm, prefix: str, what: str, problems: dict[str, str], key: str) -> dict[str, str]:
    """``<prefix>_name`` / ``<prefix>_value`` rows as a map; a row with only one half is a problem."""
    pairs: dict[str, str] = {}
    for name, value in zip(form.texts(f"{prefix}_name"), form.data.getlist(f"{prefix}_value"), strict=False):
        value = value if isinstance(value, str) else ""
        if not name and not value:
            continue
        if not name:
            problems[key] = f"Each {what} value needs a name."
        elif not value:
            problems[key] = f"Enter a value for {name} (values are never shown again, so type them once more)."
        else:
            pairs[name] = value
    return pairs


# --- adding ------------------------------------------------------------------------------------


@dataclass
class NewServerForm:
    """What the add form shows; re-filled after an error without any secret value."""

    name: str = ""
    connection_type: str = "http"
    connection_string: str = ""
    stdio_command: str = ""
    stdio_args: str = ""
    stdio_cwd: str = ""
    env_names: list[str] = field(default_factory=list)
    auth_type: str = "none"
    header_names: list[str] = field(default_factory=list)
    oauth_client_id: str = ""
    oauth_scopes: str = ""
    oauth_authorize_url: str = ""
    oauth_token_url: str = ""
    oauth_registration_url: str = ""
    tools_mode: str = "all"
    tools_list: str = ""
    auto_tools: str = ""
    allowed_extra_headers: str = ""
    allow_on_all_virtual_keys: bool = False
    is_ping_available: bool = True
    tool_sync_interval: str = "0"

    def rows(self, typed: list[str]) -> list[str]:
        """Row names for a name/value table: what was typed, then blank rows."""
        return [*typed, *[""] * max(1, BLANK_ROWS - len(typed))]

    @classmethod
    def read(cls, form: SubmittedForm) -> NewServerForm:
        return cls(
            name=form.text("name"),
            connection_type=form.text("connection_type", "http"),
            connection_string=form.text("connection_string"),
            stdio_command=form.text("stdio_command"),
            stdio_args=form.text("stdio_args"),
            stdio_cwd=form.text("stdio_cwd"),
            env_names=[name for name in form.texts("env_name") if name],
            auth_type=form.text("auth_type", "none"),
            header_names=[name for name in form.texts("header_name") if name],
            oauth_client_id=form.text("oauth_client_id"),
            oauth_scopes=form.text("oauth_scopes"),
            oauth_authorize_url=form.text("oauth_authorize_url"),
            oauth_token_url=form.text("oauth_token_url"),
            oauth_registration_url=form.text("oauth_registration_url"),
            tools_mode=form.text("tools_mode", "all"),
            tools_list=form.text("tools_list"),
            auto_tools=form.text("auto_tools"),
            allowed_extra_headers=form.text("allowed_extra_headers"),
            allow_on_all_virtual_keys=form.flag("allow_on_all_virtual_keys"),
            is_ping_available=form.flag("is_ping_available"),
            tool_sync_interval=form.text("tool_sync_interval", "0"),
        )


def _tools(mode: str, listed: str) -> list[str]:
    if mode == "none":
        return []
    if mode == "some":
        return names(listed)
    return ["*"]


def new_server_body(form: SubmittedForm, shown: NewServerForm) -> dict[str, Any]:
    """The ``POST /api/mcp/client`` body of an add form; fields of other connection or auth types are ignored.

    Raises:
        FormProblems: a header or environment row is half filled, or the interval is not a number.
    """
    problems: dict[str, str] = {}
    body: dict[str, Any] = {
        "name": shown.name,
        "connection_type": shown.connection_type,
        # A local command has nothing to authenticate to: the auth choices are for HTTP and SSE.
        "auth_type": "none" if shown.connection_type == "stdio" else shown.auth_type,
        "tools_to_execute": _tools(shown.tools_mode, shown.tools_list),
        "tools_to_auto_execute": names(shown.auto_tools),
        "allowed_extra_headers": names(shown.allowed_extra_headers),
        "allow_on_all_virtual_keys": shown.allow_on_all_virtual_keys,
        "is_ping_available": shown.is_ping_available,
        "tool_sync_interval": _sync_interval(shown.tool_sync_interval, problems),
    }
    if shown.connection_type == "stdio":
        if not shown.stdio_command:
            problems["stdio_command"] = "Enter the command that starts the server."
        stdio: dict[str, Any] = {
            "command": shown.stdio_command,
            "args": [line.strip() for line in shown.stdio_args.splitlines() if line.strip()],
            "envs": _pairs(form, "env", "environment", problems, "stdio_env"),
        }
        if shown.stdio_cwd:
            stdio["cwd"] = shown.stdio_cwd
        body["stdio_config"] = stdio
    else:
        body["connection_string"] = shown.connection_string
        if body["auth_type"] == "headers":
            body["headers"] = _pairs(form, "header", "header", problems, "headers")
    if body["auth_type"] in ("oauth", "per_user_oauth"):
        oauth = {
            "client_id": shown.oauth_client_id,
            "client_secret": form.text("oauth_client_secret"),
            "authorize_url": shown.oauth_authorize_url,
            "token_url": shown.oauth_token_url,
            "registration_url": shown.oauth_registration_url,
        }
        settings: dict[str, Any] = {key: value for key, value in oauth.items() if value}
        if shown.oauth_scopes:
            settings["scopes"] = names(shown.oauth_scopes)
        body["oauth_config"] = settings
    if problems:
        raise FormProblems(problems)
    return body


# --- editing -----------------------------------------------------------------------------------


@dataclass
class EditServerForm:
    """What the edit form shows: the fields the API lets change (the connection is fixed)."""

    name: str
    tools_mode: str
    tools_selected: list[str]
    tools_other: str
    auto_all: bool
    auto_selected: list[str]
    header_names: list[str]
    removed_headers: list[str]
    new_header_names: list[str]
    allowed_extra_headers: str
    allow_on_all_virtual_keys: bool
    is_ping_available: bool
    tool_sync_interval: str

    @classmethod
    def of(cls, view: MCPClientView) -> EditServerForm:
        config = view.config
        allowed = list(config.get("tools_to_execute") or [])
        auto = list(config.get("tools_to_auto_execute") or [])
        discovered = {tool.name for tool in view.tools}
        return cls(
            name=str(config["name"]),
            tools_mode="all" if "*" in allowed else "some",
            tools_selected=[name for name in allowed if name in discovered],
            tools_other=", ".join(name for name in allowed if name != "*" and name not in discovered),
            auto_all="*" in auto,
            auto_selected=[name for name in auto if name != "*"],
            header_names=list((config.get("headers") or {}).keys()),
            removed_headers=[],
            new_header_names=[],
            allowed_extra_headers=", ".join(config.get("allowed_extra_headers") or []),
            allow_on_all_virtual_keys=bool(config.get("allow_on_all_virtual_keys")),
            is_ping_available=bool(config.get("is_ping_available", True)),
            tool_sync_interval=str(config.get("tool_sync_interval") or 0),
        )

    def new_rows(self) -> list[str]:
        return [*self.new_header_names, ""]


def edit_body(form: SubmittedForm, view: MCPClientView) -> tuple[EditServerForm, MCPClientUpdate]:
    """The edit form as typed, and the ``PUT /api/mcp/client/{id}`` body it stands for.

    Existing headers keep their value when the value box is left empty (sent as ``"<redacted>"``).

    Raises:
        FormProblems: a new header row is half filled, or the interval is not a number.
    """
    problems: dict[str, str] = {}
    stored = dict(view.config.get("headers") or {})
    removed = set(form.texts("header_remove"))
    headers: dict[str, str] = {}
    for name, value in zip(form.texts("header_kept"), form.data.getlist("header_kept_value"), strict=False):
        if name in stored and name not in removed:
            headers[name] = value if isinstance(value, str) and value else REDACTED
    added = _pairs(form, "header", "header", problems, "headers")
    headers.update(added)
    auto_all = form.flag("auto_all")
    shown = EditServerForm(
        name=form.text("name"),
        tools_mode=form.text("tools_mode", "all"),
        tools_selected=form.texts("tools_selected"),
        tools_other=form.text("tools_other"),
        auto_all=auto_all,
        auto_selected=form.texts("auto_selected"),
        header_names=list(stored),
        removed_headers=sorted(removed),
        new_header_names=[name for name in form.texts("header_name") if name],
        allowed_extra_headers=form.text("allowed_extra_headers"),
        allow_on_all_virtual_keys=form.flag("allow_on_all_virtual_keys"),
        is_ping_available=form.flag("is_ping_available"),
        tool_sync_interval=form.text("tool_sync_interval", "0"),
    )
    if shown.tools_mode == "all":
        tools = ["*"]
    else:
        tools = names(" ".join([*shown.tools_selected, shown.tools_other]))
    interval = _sync_interval(shown.tool_sync_interval, problems)
    if problems:
        raise FormProblems(problems)
    update: dict[str, Any] = {
        "name": shown.name,
        "tools_to_execute": tools,
        "tools_to_auto_execute": ["*"] if auto_all else names(" ".join(shown.auto_selected)),
        "allowed_extra_headers": names(shown.allowed_extra_headers),
        "allow_on_all_virtual_keys": shown.allow_on_all_virtual_keys,
        "is_ping_available": shown.is_ping_available,
        "tool_sync_interval": interval,
    }
    if view.config.get("connection_type") != "stdio":
        update["headers"] = headers
    try:
        return shown, MCPClientUpdate.model_validate(update)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise FormProblems({_field_of(".".join(map(str, error["loc"]))) or "": str(error["msg"])}) from None


# --- errors ------------------------------------------------------------------------------------


def _field_of(path: str) -> str | None:
    """The form field a JSON path (``$.stdio_config.args[0]``) or an error ``param`` is about."""
    cleaned = re.sub(r"\[[^\]]*\]", "", path.removeprefix("$").lstrip("."))
    while cleaned:
        if cleaned in _PATH_FIELDS:
            return _PATH_FIELDS[cleaned]
        cleaned = cleaned.rpartition(".")[0]
    return None


def _problems(exc: GatewayError) -> Iterable[tuple[str | None, str]]:
    listed = exc.extra_fields.get("errors")
    if isinstance(listed, list) and listed:
        for problem in listed:
            path, _, message = str(problem).partition(": ")
            yield _field_of(path), message or path
        return
    target = _field_of(exc.param) if exc.param else None
    if target is None and "already exists" in exc.message:
        target = "name"
    yield target, exc.message


def field_errors(exc: GatewayError) -> dict[str, str]:
    """The API's refusal as form-field messages; ``""`` holds what belongs to no field."""
    errors: dict[str, str] = {}
    for target, message in _problems(exc):
        key = target or ""
        errors[key] = f"{errors[key]} {message}" if key in errors else message
    return errors


def summary(errors: Mapping[str, str]) -> list[str]:
    """The messages for the form's error summary, each with the label of its field."""
    return [f"{FIELD_LABELS[key]}: {message}" if key in FIELD_LABELS else message for key, message in errors.items()]
