"""MCP on the LLM gateway: which tools a chat request gets, agent mode, and ``/v1/mcp/tool/execute``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from heimdall.asgi import ClientDisconnected, Receive, Scope, Send, header_map, read_body, send_bytes, send_error
from heimdall.errors import BadRequest, Forbidden, GatewayError
from heimdall.gateway import Gateway
from heimdall.governance.request_log import BODY_LIMIT
from heimdall.llm.pipeline import Caller as LLMCaller
from heimdall.mcp.call_log import ToolCallEntry
from heimdall.mcp.catalog import CatalogTool, Filters
from heimdall.mcp.runtime import AuthRequired
from heimdall.mcp.runtime import Caller as MCPCaller
from heimdall.mcp.tool_calls import MCPAuthRequiredError, offer_tools

USER_ID_HEADER = "x-bf-user-id"
#: How a failed call's output starts (``tool_calls.ToolExecutor.run`` and ``result_text``, case-insensitive).
_FAILED_OUTPUT = ("tool execution failed", "error")


@dataclass(frozen=True, slots=True)
class MCPPlan:
    """What MCP adds to one chat request."""

    caller: MCPCaller
    filters: Filters
    tools: list[CatalogTool]

    @property
    def agent_mode(self) -> bool:
        return any(tool.auto_execute for tool in self.tools)


def text_headers(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in raw.items()}


def mcp_caller(llm_caller: LLMCaller, headers: dict[str, str]) -> MCPCaller:
    """The identity MCP calls run under on the LLM gateway.

    ``X-Bf-User-Id`` counts only from a caller whose virtual key may assert user ids (W2); anyone
    else sending it is refused rather than silently given another identity.
    """
    vk = llm_caller.vk
    user_id = headers.get(USER_ID_HEADER, "").strip() or None
    if user_id is not None:
        if vk is None or not vk.can_assert_user_ids:
            raise Forbidden(
                "X-Bf-User-Id is accepted only with a virtual key that is allowed to assert user ids",
                code="user_id_assertion_not_allowed",
            )
        if len(user_id) > 255:
            raise BadRequest("X-Bf-User-Id is too long (max 255 characters)")
    return MCPCaller(
        vk_id=vk.id if vk else None,
        vk_name=vk.name if vk else None,
        user_id=user_id,
        request_headers=headers,
        on_mcp_gateway=False,
    )


def plan_for(gateway: Gateway, llm_caller: LLMCaller, raw_headers: dict[bytes, bytes]) -> MCPPlan | None:
    mcp = gateway.mcp
    if mcp is None or not mcp.active:
        return None
    headers = text_headers(raw_headers)
    filters = Filters.from_headers(headers)
    tools = mcp.catalog.tools(llm_caller.vk, filters)
    if not tools:
        return None
    return MCPPlan(caller=mcp_caller(llm_caller, headers), filters=filters, tools=tools)


def apply_plan(body: dict[str, Any], plan: MCPPlan) -> None:
    offer_tools(body, plan.tools)


class ToolExecuteEndpoint:
    """``POST /v1/mcp/tool/execute?format=chat|responses``: run one tool call the model produced."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from heimdall.llm.pipeline import authenticate

        logged = ToolCallEntry(scope["path"], time.perf_counter())
        capture = self.gateway.request_log.capture_bodies
        try:
            if scope["method"] != "POST":
                raise GatewayError("use POST", status_code=405, error_type="method_not_allowed")
            query = scope.get("query_string", b"").decode("latin-1")
            response_format = "responses" if "format=responses" in query else "chat"
            raw_headers = header_map(scope)
            body = await read_body(receive, raw_headers, self.gateway.body_limit())
            if capture:
                logged.request_body = body[:BODY_LIMIT]
            try:
                call = orjson.loads(body) if body else None
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"malformed JSON: {exc}") from None
            if response_format == "responses" and isinstance(call, dict) and call.get("type") == "function_call":
                call = {"id": call.get("call_id"), "type": "function", "function": call}
            llm_caller = authenticate(self.gateway.snapshot, self.gateway.box, raw_headers)
            mcp = self.gateway.mcp
            if mcp is None:
                raise BadRequest("no MCP servers are configured")
            headers = text_headers(raw_headers)
            caller = logged.caller = mcp_caller(llm_caller, headers)
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                name = call["function"].get("name")
                logged.tool = name if isinstance(name, str) else None
            entry, arguments = mcp.executor.resolve(call, llm_caller.vk, Filters.from_headers(headers))
            logged.entry = entry
            try:
                output = await mcp.executor.run(entry, arguments, caller)
            except AuthRequired as exc:
                raise MCPAuthRequiredError(exc) from None
            if output[:21].lower().startswith(_FAILED_OUTPUT):
                logged.error = output
            call_id = str(call.get("id") or "") if isinstance(call, dict) else ""
            if response_format == "responses":
                result: dict[str, Any] = {"type": "function_call_output", "call_id": call_id, "output": output}
            else:
                result = {"role": "tool", "tool_call_id": call_id, "content": output}
            payload = orjson.dumps(result)
            if capture:
                logged.response_body = payload[:BODY_LIMIT]
            await send_bytes(send, 200, payload)
        except GatewayError as exc:
            logged.status, logged.error, logged.error_type = exc.status_code, exc.message, exc.error_type
            await send_error(send, exc)
        except ClientDisconnected:
            logged.status = 499
        finally:
            logged.finished = time.perf_counter()
            seconds = logged.finished - logged.started
            self.gateway.metrics.observe_request("mcp_tool_execute", "mcp", "-", logged.status, seconds)
            self.gateway.request_log.record(logged)
