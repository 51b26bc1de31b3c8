"""What ``heimdall demo`` prints once everything runs: where things are, and three steps to try.

The commands are meant to be copied as they are: values are shell-quoted, and each command's
continuation lines end with a backslash.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from heimdall.demo.config import MODEL_ALIAS, NOTES_NAME
from heimdall.demo.login_page import DEMO_USERS

__all__ = ["DemoInfo", "chat_curl", "grants_curl", "render"]

QUESTION = "What are my notes?"
INSPECTOR_PACKAGE = "@modelcontextprotocol/inspector"


@dataclass(frozen=True, slots=True)
class DemoInfo:
    gateway_url: str
    notes_url: str
    model_url: str
    admin_token: str
    virtual_key: str
    app_dir: Path
    keep: bool

    @property
    def mcp_url(self) -> str:
        return f"{self.gateway_url}/mcp"


def chat_curl(info: DemoInfo, user: str, question: str = QUESTION) -> str:
    """``curl`` for one chat completion as ``user``, on behalf of whom the virtual key speaks."""
    body = {"model": MODEL_ALIAS, "messages": [{"role": "user", "content": question}]}
    return (
        f"curl -s {info.gateway_url}/v1/chat/completions \\\n"
        f"  -H {shlex.quote('x-bf-vk: ' + info.virtual_key)} -H {shlex.quote('X-Bf-User-Id: ' + user)} \\\n"
        f"  -H 'Content-Type: application/json' \\\n"
        f"  -d {shlex.quote(json.dumps(body))}"
    )


def grants_curl(info: DemoInfo) -> str:
    return (
        f"curl -s {info.gateway_url}/api/oauth/per-user/grants \\\n"
        f"  -H {shlex.quote('Authorization: Bearer ' + info.admin_token)}"
    )


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


def render(info: DemoInfo) -> str:
    first, second = DEMO_USERS
    app_dir_note = "kept after exit (--keep)" if info.keep else "deleted on exit; --keep keeps it"
    inspector = f"npx {INSPECTOR_PACKAGE} --transport http --server-url {info.mcp_url}"
    claude = f"claude mcp add --transport http heimdall-demo {info.mcp_url}"
    return f"""
Heimdall demo is running. Ctrl-C stops everything.

  Gateway        {info.gateway_url}   (web UI, /v1 LLM gateway, /mcp MCP gateway)
  Admin token    {info.admin_token}
  Virtual key    {info.virtual_key}   (model {MODEL_ALIAS}; may act for users via X-Bf-User-Id)
  Notes service  {info.notes_url}   (an MCP server with its own OAuth login; users {first}, {second})
  Model          {info.model_url}   (a scripted model that calls the notes tools)
  App dir        {info.app_dir}   ({app_dir_note})

1. MCP gateway: connect an MCP client to {info.mcp_url} and consent as {first}
{_indent(inspector, 5)}
     (or: {claude})
   Heimdall's consent page opens: type the User ID "{first}", press Connect next to {NOTES_NAME},
   sign in to Notes as {first}, then Finish. Call {NOTES_NAME}-list_notes and {NOTES_NAME}-add_note.

2. LLM gateway: ask the model as {second}, with the virtual key
{_indent(chat_curl(info, second), 5)}
   The answer is 401 mcp_auth_required: open its authorize_url, sign in to Notes as {second},
   then run the same command again. The model lists {second}'s notes, never {first}'s.
   ("Remember to water the plants" as the message adds a note.)

3. Grants: open {info.gateway_url}/ and sign in with the admin token; Connected services shows
   {first}'s and {second}'s {NOTES_NAME} grants. Or:
{_indent(grants_curl(info), 5)}
"""
