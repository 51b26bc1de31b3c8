"""What one inference request did, filled in as it goes: read by the error handler, the metrics and the request log.

The endpoints only store references and a few counts here while the request runs; everything the
request log shows is derived in ``log_row``, which the log's writer calls after the request ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from heimdall.governance.request_log import BODY_LIMIT, add_outcome, capped, redact, usage_columns
from heimdall.governance.virtual_keys import VirtualKeyRuntime
from heimdall.llm.pipeline import Attempted


def tool_names(tools: Any) -> list[str]:
    """Names of the tools in an OpenAI ``tools`` list or an assistant message's ``tool_calls``."""
    names: list[str] = []
    if isinstance(tools, list):
        for tool in tools:
            function = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                names.append(function["name"])
    return names


@dataclass(slots=True)
class Exchange:
    """One request on an inference endpoint (``heimdall.governance.request_log.LogEntry``)."""

    #: The route as called, e.g. ``/v1/chat/completions`` or ``/openai/v1/embeddings``.
    endpoint: str
    #: ``time.perf_counter()`` at arrival, and when the last byte was sent.
    started: float
    finished: float = 0.0
    state: Attempted | None = None
    status: int = 200
    vk: VirtualKeyRuntime | None = None
    #: ``X-Bf-User-Id`` as sent; logged only when the virtual key may assert user ids.
    user_header: bytes | None = None
    stream: bool = False
    usage: Any = None
    error: str | None = None
    error_type: str | None = None
    #: How many ``messages`` the request sent upstream, and the names of the tools it offered.
    messages: int | None = None
    tools_offered: list[str] | None = None
    #: From the response: the first choice's finish reason and tool calls, agent-mode iterations.
    finish_reason: Any = None
    tool_calls: Any = None
    agent_iterations: Any = None
    #: ``time.perf_counter()`` when a stream's first frame was sent.
    first_byte: float | None = None
    #: Bodies, kept only when ``request_log_bodies`` is on (``capture`` is then True).
    capture: bool = False
    request_body: bytes | None = None
    response_body: bytearray | None = None

    def note_request(self, body: dict[str, Any]) -> None:
        messages = body.get("messages")
        self.messages = len(messages) if isinstance(messages, list) else None
        tools = body.get("tools")
        # Names now rather than a reference: tool lists with schemas are too big to hold in the queue.
        self.tools_offered = tool_names(tools) if tools else None
        self.stream = body.get("stream") is True

    def note_result(self, result: dict[str, Any], usage: Any) -> None:
        """A non-streamed response: its usage, finish reason, tool calls and agent iterations."""
        self.usage = usage
        choices = result.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            self.finish_reason = choice.get("finish_reason")
            message = choice.get("message")
            if isinstance(message, dict):
                self.tool_calls = message.get("tool_calls")
        extra = result.get("extra_fields")
        if isinstance(extra, dict):
            self.agent_iterations = extra.get("agent_iterations")

    def note_final_chunk(self, chunk: dict[str, Any]) -> None:
        """A stream chunk with usage or a finish reason (the ones the relay parses anyway)."""
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        choices = chunk.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            reason = choices[0].get("finish_reason")
            if reason:
                self.finish_reason = reason

    def capture_request(self, body: bytes) -> None:
        self.request_body = body[:BODY_LIMIT]

    def capture_response(self, chunk: bytes) -> None:
        if self.response_body is None:
            self.response_body = bytearray()
        if len(self.response_body) < BODY_LIMIT:
            self.response_body += chunk[: BODY_LIMIT - len(self.response_body)]

    def log_row(self) -> dict[str, Any]:
        state = self.state
        route = state.route if state else None
        target = state.target if state else None
        vk = self.vk
        user_id = None
        if self.user_header and vk is not None and vk.can_assert_user_ids:
            user_id = self.user_header.decode("latin-1").strip() or None
        detail: dict[str, Any] = {}
        if target is not None:
            detail["key_id"] = target.key.id
        if state is not None and state.attempts:
            detail["attempts"] = state.attempts
        if self.messages is not None:
            detail["messages"] = self.messages
        if self.tools_offered:
            detail["tools_offered"] = capped(self.tools_offered)
        if called := tool_names(self.tool_calls):
            detail["tools_called"] = capped(called)
        if isinstance(self.finish_reason, str):
            detail["finish_reason"] = self.finish_reason
        if isinstance(self.agent_iterations, int):
            detail["agent_iterations"] = self.agent_iterations
        if self.first_byte is not None:
            detail["ttfb_ms"] = round((self.first_byte - self.started) * 1000, 3)
        add_outcome(detail, self.error_type, self.request_body, self.response_body)
        return {
            "endpoint": self.endpoint,
            "caller": vk.name if vk is not None else user_id,
            "virtual_key_id": vk.id if vk is not None else None,
            "user_id": user_id,
            "provider": route.provider.name if route is not None else None,
            "model_requested": state.model_field if state is not None else None,
            "model_resolved": target.model if target is not None else None,
            "status_code": self.status,
            "stream": self.stream,
            "latency_ms": round((self.finished - self.started) * 1000, 3),
            **usage_columns(self.usage),
            "error": redact(self.error, target.key.secret if target is not None else None),
            "detail": detail or None,
        }
