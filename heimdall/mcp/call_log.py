"""Request log entries for MCP tool calls: ``/v1/mcp/tool/execute`` and ``tools/call`` over ``/mcp``.

In these rows ``model_requested`` is the tool name the caller used (``<server>-<tool>``),
``model_resolved`` the upstream server's own name for it, and ``provider`` the MCP server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from heimdall.governance.request_log import add_outcome
from heimdall.mcp.catalog import CatalogTool
from heimdall.mcp.runtime import Caller

#: Error texts are cut to this many characters (tool output can be long).
ERROR_LIMIT = 2000


@dataclass(slots=True)
class ToolCallEntry:
    """One MCP tool call (``heimdall.governance.request_log.LogEntry``)."""

    endpoint: str
    #: ``time.perf_counter()`` at arrival, and when the answer was ready.
    started: float
    finished: float = 0.0
    status: int = 200
    caller: Caller | None = None
    tool: str | None = None
    entry: CatalogTool | None = None
    error: str | None = None
    error_type: str | None = None
    request_body: bytes | None = None
    response_body: bytes | None = None

    def log_row(self) -> dict[str, Any]:
        caller = self.caller
        user_id = caller.user_id if caller is not None else None
        detail: dict[str, Any] = {}
        add_outcome(detail, self.error_type, self.request_body, self.response_body)
        return {
            "endpoint": self.endpoint,
            "caller": (caller.vk_name or user_id) if caller is not None else None,
            "virtual_key_id": caller.vk_id if caller is not None else None,
            "user_id": user_id,
            "provider": self.entry.spec.name if self.entry is not None else None,
            "model_requested": self.tool or None,
            "model_resolved": self.entry.upstream_name if self.entry is not None else None,
            "status_code": self.status,
            "stream": False,
            "latency_ms": round((self.finished - self.started) * 1000, 3),
            "prompt_tokens": None,
            "completion_tokens": None,
            "total_tokens": None,
            "error": self.error[:ERROR_LIMIT] if self.error else None,
            "detail": detail or None,
        }
