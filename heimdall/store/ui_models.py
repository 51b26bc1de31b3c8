"""Tables behind the web UI: signed-in admin sessions and the request log.

``admin_sessions`` holds one row per browser signed in with the admin credential: only a keyed hash
of the cookie value is stored, so a copy of the database cannot be replayed as a session. Signing
out deletes the row; changing the admin credential ends every session (``credential_hash``).

``request_logs`` keeps the most recent inference and MCP requests for the Logs page. Rows are
written in batches off the request path and pruned by age and count (``request_log_*`` settings).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from heimdall.store.base import Base, utcnow


class AdminSessionRow(Base):
    """One browser signed in to the web UI."""

    __tablename__ = "admin_sessions"

    #: Keyed hash (``SecretBox.lookup_hash``) of the cookie value.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Keyed hash of the admin credential the session was opened with.
    credential_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class RequestLogRow(Base):
    """One request through the gateway, as the Logs page shows it."""

    __tablename__ = "request_logs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    #: The route, e.g. ``/v1/chat/completions`` or ``/mcp``.
    endpoint: Mapped[str] = mapped_column(String(128))
    #: Who called: a virtual key's name, a user id, or null for an anonymous caller.
    caller: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    virtual_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    provider: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_requested: Mapped[str | None] = mapped_column(String(255), nullable=True)
    model_resolved: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status_code: Mapped[int] = mapped_column(Integer)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    latency_ms: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    completion_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    total_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The error message returned to the caller, if any.
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Everything else the detail view shows (attempts, key used, tools, timings); never secrets.
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
