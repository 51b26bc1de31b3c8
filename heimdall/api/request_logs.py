"""The request log: ``GET /api/logs`` (newest first, filtered, paged) and ``GET /api/logs/{log_id}``.

``recent_logs`` and ``get_log`` are what the web UI calls directly; the routes are thin wrappers.
Paging is by cursor: pass a page's ``next_before`` as ``before`` to get the rows after it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from heimdall.api.deps import AdminDep, GatewayDep
from heimdall.errors import NotFound
from heimdall.gateway import Gateway
from heimdall.store import log_repos
from heimdall.store.log_repos import LogFilters, StatusClass
from heimdall.store.ui_models import RequestLogRow

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

router = APIRouter(prefix="/api/logs", tags=["logs"], dependencies=[AdminDep])


class LogView(BaseModel):
    """One row of the Logs page."""

    id: str
    created_at: datetime = Field(description="When the request arrived (UTC).")
    endpoint: str
    caller: str | None = Field(description="Virtual key name, else the user id, else null (anonymous).")
    virtual_key_id: str | None
    user_id: str | None
    provider: str | None = Field(description="LLM provider, or the MCP server for tool calls.")
    model_requested: str | None = Field(description="The model as sent (alias or provider/model); the tool name.")
    model_resolved: str | None = Field(description="The model sent upstream, after aliases; the upstream tool name.")
    status_code: int
    stream: bool
    latency_ms: float = Field(description="Until the last byte of the response (streams included).")
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    error: str | None


class LogDetail(LogView):
    """One request with everything recorded about it."""

    detail: dict[str, Any] = Field(
        description="key_id, attempts, messages, tools_offered, tools_called, finish_reason, ttfb_ms, "
        "agent_iterations, error_type; request_body and response_body when body logging is on."
    )


class LogPage(BaseModel):
    logs: list[LogView]
    next_before: str | None = Field(description="Pass as ``before`` for the next page; null on the last page.")


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def log_view(row: RequestLogRow) -> LogView:
    return LogView(
        id=row.id,
        created_at=_utc(row.created_at),
        endpoint=row.endpoint,
        caller=row.caller,
        virtual_key_id=row.virtual_key_id,
        user_id=row.user_id,
        provider=row.provider,
        model_requested=row.model_requested,
        model_resolved=row.model_resolved,
        status_code=row.status_code,
        stream=row.stream,
        latency_ms=row.latency_ms,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        total_tokens=row.total_tokens,
        error=row.error,
    )


async def recent_logs(
    gateway: Gateway, filters: LogFilters | None = None, limit: int = DEFAULT_LIMIT, before: str | None = None
) -> LogPage:
    """The newest requests matching ``filters``, ``limit`` per page, older than the row id ``before``.

    Requests this process has queued but not yet written are written first, so a page shows them.
    """
    await gateway.request_log.flush()
    limit = max(1, min(limit, MAX_LIMIT))
    async with gateway.store.read() as session:
        rows = await log_repos.list_logs(session, filters or LogFilters(), limit=limit + 1, before=before)
    more = len(rows) > limit
    rows = rows[:limit]
    return LogPage(logs=[log_view(row) for row in rows], next_before=rows[-1].id if more else None)


async def get_log(gateway: Gateway, log_id: str) -> LogDetail | None:
    """One request with its ``detail``, or None when there is no such row (or it was pruned)."""
    async with gateway.store.read() as session:
        row = await log_repos.get_log(session, log_id)
    if row is None:
        return None
    return LogDetail(**log_view(row).model_dump(), detail=dict(row.detail or {}))


@router.get("", response_model=LogPage, summary="Recent requests, newest first")
async def list_request_logs(
    gateway: GatewayDep,
    caller: Annotated[str | None, Query(description="Exact caller: virtual key name or user id.")] = None,
    model: Annotated[str | None, Query(description="Exact model, requested or resolved (tool name for MCP).")] = None,
    status: Annotated[StatusClass | None, Query(description="ok: below 400 without error; error: the rest.")] = None,
    endpoint: Annotated[str | None, Query(description="Exact route, e.g. /v1/chat/completions or /mcp.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    before: Annotated[str | None, Query(max_length=32, description="A page's next_before.")] = None,
) -> LogPage:
    filters = LogFilters(caller=caller, model=model, status=status, endpoint=endpoint)
    return await recent_logs(gateway, filters, limit, before)


@router.get("/{log_id}", response_model=LogDetail, summary="One request with its details")
async def get_request_log(log_id: str, gateway: GatewayDep) -> LogDetail:
    found = await get_log(gateway, log_id)
    if found is None:
        raise NotFound(f"request log entry {log_id!r} not found (it may have been pruned)")
    return found
