"""MCP tools on the LLM gateway: offering them to the model and running the calls it makes.

The model sees each tool the caller may use as an OpenAI function named ``<client>-<tool>``.
A call is executed either explicitly (``POST /v1/mcp/tool/execute``) or by agent mode.
"""

from __future__ import annotations

import asyncio
from typing import Any

import mcp.types as types
import orjson

from heimdall.errors import BadRequest, GatewayError, NotFound
from heimdall.governance.virtual_keys import VirtualKeyRuntime
from heimdall.mcp.catalog import Catalog, CatalogTool, Filters
from heimdall.mcp.runtime import AuthRequired, Caller, MCPGatewayError, ToolNotFoundError


class MCPAuthRequiredError(GatewayError):
    """Lazy auth on the LLM gateway: 401 with ``extra_fields.mcp_auth_required`` (reference.md §2.7, W24).

    The URL is in the message too, for clients that only show messages.
    """

    status_code = 401
    error_type = "mcp_auth_required"

    def __init__(self, exc: AuthRequired) -> None:
        message = (
            f"Authentication required for {exc.mcp_client_name}. "
            f"Open this URL to connect your account: {exc.authorize_url}"
        )
        # The payload keeps the reference's own wording (§2.7); the envelope message carries the URL.
        super().__init__(message, extra_fields={"mcp_auth_required": exc.payload()})


def openai_tool(entry: CatalogTool) -> dict[str, Any]:
    tool = entry.tool
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema or {"type": "object"}}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def offer_tools(body: dict[str, Any], tools: list[CatalogTool]) -> None:
    """Append the caller's MCP tools to the request's ``tools`` (the caller's own tools win a name clash)."""
    if not tools:
        return
    existing = body.get("tools")
    own = existing if isinstance(existing, list) else []
    taken = {t.get("function", {}).get("name") for t in own if isinstance(t, dict)}
    body["tools"] = [*own, *(openai_tool(entry) for entry in tools if entry.name not in taken)]


def parse_arguments(raw: Any) -> dict[str, Any]:
    """OpenAI sends arguments as a JSON string; anything but a JSON object is the caller's (or model's) mistake."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        raise BadRequest("tool call arguments must be a JSON object or a JSON string", param="function.arguments")
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"tool call arguments are not valid JSON: {exc}", param="function.arguments") from None
    if not isinstance(parsed, dict):
        raise BadRequest("tool call arguments must be a JSON object", param="function.arguments")
    return parsed


def result_text(result: types.CallToolResult) -> str:
    """Tool output as the text an LLM tool message carries."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        else:
            parts.append(orjson.dumps(block.model_dump(mode="json", by_alias=True, exclude_none=True)).decode())
    if not parts and result.structured_content is not None:
        parts.append(orjson.dumps(result.structured_content).decode())
    text = "\n".join(parts)
    return f"Error: {text}" if result.is_error and not text.lower().startswith("error") else text


class ToolExecutor:
    """Runs OpenAI-format tool calls against the caller's MCP tools."""

    def __init__(self, catalog: Catalog, upstreams: Any, timeout: float) -> None:
        self.catalog = catalog
        self.upstreams = upstreams
        self.timeout = timeout

    def resolve(self, call: Any, vk: VirtualKeyRuntime | None, filters: Filters) -> tuple[CatalogTool, dict[str, Any]]:
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise BadRequest(
                'a tool call looks like {"id": ..., "type": "function", "function": {"name": ..., "arguments": ...}}'
            )
        name = call["function"].get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("function.name is required", param="function.name")
        try:
            entry = self.catalog.tool(name, vk, filters)
        except ToolNotFoundError as exc:
            raise NotFound(exc.message, code="tool_not_found") from None
        return entry, parse_arguments(call["function"].get("arguments"))

    async def run(self, entry: CatalogTool, arguments: dict[str, Any], caller: Caller) -> str:
        """Execute one call; upstream failures come back as text the model can read, lazy auth as an exception."""
        try:
            result: types.CallToolResult = await self.upstreams.call_tool(
                entry.spec, entry.upstream_name, arguments, caller, self.timeout
            )
        except AuthRequired:
            raise
        except MCPGatewayError as exc:
            return f"Tool execution failed: {exc.message}"
        except TimeoutError:
            return f"Tool execution failed: timed out after {self.timeout:g}s"
        return result_text(result)

    async def run_many(
        self, calls: list[tuple[str, CatalogTool, dict[str, Any]]], caller: Caller
    ) -> list[dict[str, Any]]:
        """Run calls in parallel; returns OpenAI ``tool`` messages in call order.

        Raises:
            MCPAuthRequiredError: any call needs the caller to connect an account first (the first one wins).
        """
        outcomes = await asyncio.gather(
            *(self.run(entry, arguments, caller) for _, entry, arguments in calls), return_exceptions=True
        )
        messages: list[dict[str, Any]] = []
        for (call_id, _, _), outcome in zip(calls, outcomes, strict=True):
            if isinstance(outcome, AuthRequired):
                raise MCPAuthRequiredError(outcome)
            if isinstance(outcome, BaseException):
                raise outcome
            messages.append({"role": "tool", "tool_call_id": call_id, "content": outcome})
        return messages
