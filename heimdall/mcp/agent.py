"""Agent mode: run the model's calls to auto-executable MCP tools and feed the results back.

One iteration: ask the model; if every tool call it makes is an MCP tool the caller may use and the
client lists in ``tools_to_auto_execute``, run them in parallel, append the assistant message and
the tool results, and ask again — up to ``max_agent_depth`` iterations. Any other tool call ends
the loop, and the response goes to the caller with its tool calls, as without agent mode.

Lazy auth (W24, decided): when a tool needs the caller to connect an account, the turn stops with a
401 ``mcp_auth_required`` error whose message and ``extra_fields`` carry the URL. Retrying the same
request after connecting runs the tool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from heimdall.governance.virtual_keys import VirtualKeyRuntime
from heimdall.llm.pipeline import Attempted, Caller, InferencePipeline
from heimdall.llm.providers.base import split_frames
from heimdall.mcp.catalog import CatalogTool, Filters
from heimdall.mcp.runtime import Caller as MCPCaller
from heimdall.mcp.tool_calls import ToolExecutor
from heimdall.state import Snapshot


def _tool_calls(result: dict[str, Any]) -> list[dict[str, Any]]:
    choices = result.get("choices")
    if not isinstance(choices, list) or not choices:
        return []
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    return [call for call in calls if isinstance(call, dict)] if isinstance(calls, list) else []


def _empty_call() -> dict[str, Any]:
    return {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}


def _add_usage(total: dict[str, int], usage: Any) -> None:
    if isinstance(usage, dict):
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = usage.get(key)
            if isinstance(value, int):
                total[key] = total.get(key, 0) + value


class Agent:
    def __init__(self, pipeline: InferencePipeline, executor: ToolExecutor, max_depth: int) -> None:
        self.pipeline = pipeline
        self.executor = executor
        self.max_depth = max_depth

    def _runnable(
        self, calls: list[dict[str, Any]], vk: VirtualKeyRuntime | None, filters: Filters
    ) -> list[tuple[str, CatalogTool, dict[str, Any]]] | None:
        """The calls as (id, tool, arguments), or None when any of them is not ours to run."""
        runnable: list[tuple[str, CatalogTool, dict[str, Any]]] = []
        for call in calls:
            try:
                entry, arguments = self.executor.resolve(call, vk, filters)
            except Exception:
                return None
            if not entry.auto_execute:
                return None
            runnable.append((str(call.get("id") or ""), entry, arguments))
        return runnable

    async def complete(
        self,
        snapshot: Snapshot,
        caller: Caller,
        state: Attempted,
        body: dict[str, Any],
        filters: Filters,
        mcp_caller: MCPCaller,
    ) -> dict[str, Any]:
        messages = list(body.get("messages") or [])
        usage: dict[str, int] = {}
        iterations = 0
        while True:
            result = await self.pipeline.chat(snapshot, caller, state, {**body, "messages": messages})
            iterations += 1
            _add_usage(usage, result.get("usage"))
            calls = _tool_calls(result)
            runnable = self._runnable(calls, caller.vk, filters) if calls else None
            if not runnable or iterations >= self.max_depth:
                if usage and iterations > 1:
                    result["usage"] = usage
                result.setdefault("extra_fields", {})["agent_iterations"] = iterations
                return result
            assistant = result["choices"][0]["message"]
            messages.append({k: v for k, v in assistant.items() if k in ("role", "content", "tool_calls")})
            messages.extend(await self.executor.run_many(runnable, mcp_caller))

    async def stream(
        self,
        snapshot: Snapshot,
        caller: Caller,
        state: Attempted,
        body: dict[str, Any],
        filters: Filters,
        mcp_caller: MCPCaller,
    ) -> AsyncIterator[bytes]:
        """Stream every iteration's text; tool-call frames of iterations we run ourselves are held back."""
        messages = list(body.get("messages") or [])
        iterations = 0
        while True:
            first, frames = await self.pipeline.open_stream(snapshot, caller, state, {**body, "messages": messages})
            iterations += 1
            held: list[bytes] = []
            text: list[str] = []
            calls: dict[int, dict[str, Any]] = {}
            try:
                frame: bytes | None = first
                while frame is not None:
                    passed: list[bytes] = []
                    for payload in split_frames(frame):
                        chunk = orjson.loads(payload)
                        choice = (chunk.get("choices") or [{}])[0] if isinstance(chunk, dict) else {}
                        delta = choice.get("delta") or {}
                        framed = b"data: " + payload + b"\n\n"
                        if delta.get("tool_calls") or choice.get("finish_reason") == "tool_calls":
                            for part in delta.get("tool_calls") or []:
                                slot = calls.setdefault(int(part.get("index", 0)), _empty_call())
                                slot["id"] = part.get("id") or slot["id"]
                                function = part.get("function") or {}
                                slot["function"]["name"] += function.get("name") or ""
                                slot["function"]["arguments"] += function.get("arguments") or ""
                            held.append(framed)
                        else:
                            if isinstance(delta.get("content"), str):
                                text.append(delta["content"])
                            passed.append(framed)
                    if passed:
                        yield b"".join(passed)
                    frame = await anext(frames, None)
            finally:
                await frames.aclose()  # type: ignore[attr-defined]
            ordered = [calls[index] for index in sorted(calls)]
            runnable = self._runnable(ordered, caller.vk, filters) if ordered else None
            if not runnable or iterations >= self.max_depth:
                for frame in held:
                    yield frame
                return
            messages.append({"role": "assistant", "content": "".join(text) or None, "tool_calls": ordered})
            messages.extend(await self.executor.run_many(runnable, mcp_caller))
