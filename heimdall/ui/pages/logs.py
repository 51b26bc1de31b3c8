"""Logs: the most recent requests through the gateway, newest first, and one request in full.

Rows come from ``heimdall.api.request_logs`` (``recent_logs``, ``get_log``), the functions behind
``GET /api/logs``. Paging is by cursor: "Older" carries the last row's id as ``before``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from heimdall.api import request_logs
from heimdall.api.request_logs import LogView
from heimdall.settings import Settings
from heimdall.store.log_repos import LogFilters, StatusClass
from heimdall.ui.guard import AdminPage, gateway_of
from heimdall.ui.moments import Moment, moment
from heimdall.ui.render import page

router = APIRouter(include_in_schema=False)

PATH = "/logs"
PAGE_SIZE = 50
MAX_FILTER = 255
#: Log row ids are 32 hex digits (``log_repos.new_log_id``).
LOG_ID = re.compile(r"[0-9a-f]{1,32}")
STATUS_OPTIONS = [("", "Any status"), ("ok", "OK"), ("error", "Error")]


@dataclass(frozen=True, slots=True)
class Filters:
    caller: str
    model: str
    status: StatusClass | None
    before: str | None

    def query(self, before: str | None = None) -> str:
        pairs = [
            ("caller", self.caller),
            ("model", self.model),
            ("status", self.status or ""),
            ("before", before or ""),
        ]
        encoded = urlencode([(name, value) for name, value in pairs if value])
        return f"{PATH}?{encoded}" if encoded else PATH

    @property
    def active(self) -> bool:
        return bool(self.caller or self.model or self.status)

    def for_store(self) -> LogFilters:
        return LogFilters(caller=self.caller or None, model=self.model or None, status=self.status)


def _filters(request: Request) -> Filters:
    params = request.query_params
    raw_status = params.get("status", "")
    status: StatusClass | None = "ok" if raw_status == "ok" else "error" if raw_status == "error" else None
    before = params.get("before", "")
    return Filters(
        caller=params.get("caller", "").strip()[:MAX_FILTER],
        model=params.get("model", "").strip()[:MAX_FILTER],
        status=status,
        before=before if LOG_ID.fullmatch(before) else None,
    )


@dataclass(frozen=True, slots=True)
class LogRow:
    """One request as the list and the detail view show it."""

    id: str
    at: Moment
    caller: str | None
    #: The end user the request was made for, when it differs from the caller (a key acting for a user).
    on_behalf_of: str | None
    endpoint: str
    model_requested: str | None
    model_resolved: str | None
    #: ``ok`` or ``error`` (a 2xx/3xx that failed mid-stream counts as an error).
    outcome: str
    status_code: int
    latency: str
    tokens: tuple[int | None, int | None, int | None]
    error: str | None


def _latency(milliseconds: float) -> str:
    return f"{milliseconds:,.1f}" if milliseconds < 10 else f"{milliseconds:,.0f}"


def _row(view: LogView) -> LogRow:
    at = moment(view.created_at, seconds=True)
    assert at is not None
    return LogRow(
        id=view.id,
        at=at,
        caller=view.caller,
        on_behalf_of=view.user_id if view.user_id and view.user_id != view.caller else None,
        endpoint=view.endpoint,
        model_requested=view.model_requested,
        model_resolved=view.model_resolved,
        outcome="error" if view.status_code >= 400 or view.error else "ok",
        status_code=view.status_code,
        latency=_latency(view.latency_ms),
        tokens=(view.prompt_tokens, view.completion_tokens, view.total_tokens),
        error=view.error,
    )


def retention(settings: Settings) -> str:
    """``the latest 10,000 requests, for at most 7 days``, or that logging is off."""
    if not settings.request_log_enabled:
        return ""
    hours = settings.request_log_max_age_hours
    if hours >= 24 and hours % 24 == 0:
        days = int(hours // 24)
        age = f"{days} day{'s' if days != 1 else ''}"
    else:
        age = f"{hours:g} hour{'s' if hours != 1 else ''}"
    return f"the latest {settings.request_log_max_rows:,} requests, for at most {age}"


@router.get(PATH)
async def logs(request: Request, admin: AdminPage) -> Response:
    gateway = gateway_of(request)
    filters = _filters(request)
    found = await request_logs.recent_logs(gateway, filters.for_store(), PAGE_SIZE, filters.before)
    return page(
        request,
        admin,
        "admin/logs/list.html",
        section="logs",
        rows=[_row(view) for view in found.logs],
        filters=filters,
        status_options=STATUS_OPTIONS,
        older_url=filters.query(found.next_before) if found.next_before else None,
        newest_url=filters.query() if filters.before else None,
        enabled=gateway.settings.request_log_enabled,
        retention=retention(gateway.settings),
        base_url=gateway.settings.base_url,
    )


@router.get(PATH + "/{log_id}")
async def log_detail(request: Request, log_id: str, admin: AdminPage) -> Response:
    gateway = gateway_of(request)
    found = await request_logs.get_log(gateway, log_id) if LOG_ID.fullmatch(log_id) else None
    if found is None:
        return page(
            request,
            admin,
            "admin/logs/missing.html",
            section="logs",
            status_code=404,
            retention=retention(gateway.settings),
        )
    detail_json = json.dumps(found.detail, indent=2, sort_keys=True, ensure_ascii=False) if found.detail else None
    return page(
        request,
        admin,
        "admin/logs/detail.html",
        section="logs",
        row=_row(found),
        entry=found,
        detail_json=detail_json,
    )
