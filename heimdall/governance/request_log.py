"""The request log recorder: requests are noted on the hot path and written to the store in batches.

``RequestLog.record(entry)`` is what an endpoint calls when a request ends. It only appends the
entry to a bounded queue: no database, no await, nothing that can raise into the request. A
background task (``start``) wakes every ``FLUSH_SECONDS`` or once ``FLUSH_BATCH`` entries wait,
turns the entries into rows (``LogEntry.log_row``, so even building the row happens off the request
path) and inserts them, up to ``WRITE_BATCH`` per transaction. When the writer falls behind, the
oldest waiting entries are dropped and counted (``heimdall_request_log_dropped_total``). The same
task prunes the table to ``request_log_max_age_hours`` and ``request_log_max_rows``.

Secrets never reach an entry: endpoints hand over names and ids (virtual key name and id, provider
key id), never key values or headers, and error messages are scrubbed of the provider key they
were sent with (``redact``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter

from heimdall.settings import Settings
from heimdall.store import log_repos
from heimdall.store.repos import Store

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
FLUSH_BATCH = 200
#: Entries per transaction when more are waiting (bounds how long one batch holds the event loop).
WRITE_BATCH = 500
#: Entries waiting for the writer; beyond this the oldest are dropped.
QUEUE_LIMIT = 10_000
#: Bodies (only with ``request_log_bodies``) are cut to this many bytes each.
BODY_LIMIT = 8 * 1024
#: Age pruning runs at least this often; count pruning also after ``max_rows // 10`` new rows.
PRUNE_SECONDS = 60.0
#: Lists that go into ``detail`` (tool names) are cut to this many items.
LIST_LIMIT = 64
#: How long shutdown waits for a batch being written.
STOP_SECONDS = 10.0
REDACTED = "[redacted]"


class LogEntry(Protocol):
    """One finished request, as an endpoint hands it to ``RequestLog.record``."""

    #: ``time.perf_counter()`` when the request arrived; the row's ``created_at`` is derived from it.
    started: float

    def log_row(self) -> dict[str, Any]:
        """The ``request_logs`` columns except ``id`` and ``created_at`` (called by the writer, not per request)."""
        ...


def usage_columns(usage: object) -> dict[str, int | None]:
    """Token counts from an OpenAI (``prompt_tokens``…) or Anthropic (``input_tokens``…) usage object."""
    if not isinstance(usage, dict):
        return {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    total = usage.get("total_tokens")
    prompt = prompt if isinstance(prompt, int) else None
    completion = completion if isinstance(completion, int) else None
    if not isinstance(total, int):
        total = prompt + completion if prompt is not None and completion is not None else None
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def body_text(body: bytes | bytearray) -> str:
    """A captured body for ``detail``: at most ``BODY_LIMIT`` bytes, decoded leniently."""
    return bytes(body[:BODY_LIMIT]).decode("utf-8", "replace")


def add_outcome(
    detail: dict[str, Any],
    error_type: str | None,
    request_body: bytes | bytearray | None,
    response_body: bytes | bytearray | None,
) -> None:
    """Put the error type and the captured bodies (when bodies are kept) into a row's ``detail``."""
    if error_type is not None:
        detail["error_type"] = error_type
    if request_body is not None:
        detail["request_body"] = body_text(request_body)
    if response_body is not None:
        detail["response_body"] = body_text(response_body)


def redact(text: str | None, *secrets: str | None) -> str | None:
    """``text`` with every occurrence of the given secrets replaced (for upstream error messages)."""
    if text is None:
        return None
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def capped(names: list[str]) -> list[str]:
    return names if len(names) <= LIST_LIMIT else [*names[:LIST_LIMIT], f"… {len(names) - LIST_LIMIT} more"]


class RequestLog:
    """Owned by the ``Gateway``; one per process."""

    def __init__(
        self,
        store: Store,
        registry: CollectorRegistry,
        *,
        enabled: bool = True,
        max_rows: int = 10_000,
        max_age: timedelta = timedelta(hours=168),
        capture_bodies: bool = False,
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        self.store = store
        self.enabled = enabled
        #: Whether endpoints keep request and response bodies for the entry (off unless configured).
        self.capture_bodies = enabled and capture_bodies
        self.max_rows = max_rows
        self.max_age = max_age
        self.queue: deque[LogEntry] = deque(maxlen=queue_limit)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failing = False
        self._written_since_prune = 0
        self._last_prune = -PRUNE_SECONDS
        self.dropped = Counter(
            "heimdall_request_log_dropped_total",
            "Request log entries never written: the queue overflowed or the store refused the batch.",
            ["reason"],
            registry=registry,
        )
        self._overflowed = self.dropped.labels("queue_full")
        self._failed = self.dropped.labels("write_failed")
        self.written = Counter(
            "heimdall_request_log_written_total", "Request log entries written to the store.", registry=registry
        )

    @classmethod
    def from_settings(cls, store: Store, registry: CollectorRegistry, settings: Settings) -> RequestLog:
        return cls(
            store,
            registry,
            enabled=settings.request_log_enabled,
            max_rows=settings.request_log_max_rows,
            max_age=timedelta(hours=settings.request_log_max_age_hours),
            capture_bodies=settings.request_log_bodies,
        )

    def record(self, entry: LogEntry) -> None:
        """Queue one finished request. O(1); never blocks, never raises."""
        if not self.enabled:
            return
        queue = self.queue
        if len(queue) == queue.maxlen:
            self._overflowed.inc()  # the append below pushes the oldest entry out
        queue.append(entry)
        if len(queue) >= FLUSH_BATCH:
            self._wake.set()

    # --- the writer ----------------------------------------------------------------------------

    def _rows(self, entries: list[LogEntry]) -> list[dict[str, Any]]:
        # Wall-clock arrival = now minus the time since arrival on the monotonic clock.
        wall_ns, perf = time.time_ns(), time.perf_counter()
        rows: list[dict[str, Any]] = []
        for entry in entries:
            try:
                row = entry.log_row()
            except Exception:
                log.exception("could not turn a request into a request log row; skipping it")
                self._failed.inc()
                continue
            arrived_ns = wall_ns - int((perf - entry.started) * 1e9)
            row["id"] = log_repos.new_log_id(arrived_ns)
            row["created_at"] = datetime.fromtimestamp(arrived_ns / 1e9, UTC)
            rows.append(row)
        return rows

    async def flush(self) -> int:
        """Write everything queued so far, ``WRITE_BATCH`` entries per transaction; returns the rows written."""
        written = 0
        async with self._lock:
            pending = len(self.queue)  # entries queued while writing wait for the next flush
            while pending > 0 and self.queue:
                size = min(pending, len(self.queue), WRITE_BATCH)
                pending -= size
                written += await self._write([self.queue.popleft() for _ in range(size)])
        return written

    async def _write(self, entries: list[LogEntry]) -> int:
        """One transaction; returns the rows written (0 when the store refused them)."""
        rows = self._rows(entries)
        if not rows:
            return 0
        try:
            async with self.store.transaction() as session:
                await log_repos.insert_logs(session, rows)
        except Exception:
            # One traceback per outage, not one per batch.
            if not self._failing:
                log.exception("could not write %d request log rows; they are dropped", len(rows))
            self._failing = True
            self._failed.inc(len(rows))
            return 0
        if self._failing:
            log.info("writing the request log again")
            self._failing = False
        self.written.inc(len(rows))
        self._written_since_prune += len(rows)
        return len(rows)

    async def prune(self, now: datetime | None = None) -> int:
        """Apply the retention limits now; returns rows deleted."""
        async with self.store.transaction() as session:
            removed = await log_repos.prune_logs(
                session, older_than=(now or datetime.now(UTC)) - self.max_age, keep=self.max_rows
            )
        self._written_since_prune = 0
        self._last_prune = time.monotonic()
        return removed

    def _prune_due(self) -> bool:
        return (
            self._written_since_prune >= max(self.max_rows // 10, 1)
            or time.monotonic() - self._last_prune >= PRUNE_SECONDS
        )

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()
            if not self._stopping and self._prune_due():
                try:
                    await self.prune()
                except Exception:
                    log.exception("pruning the request log failed; retrying later")
                    self._last_prune = time.monotonic()

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="request-log-writer")

    async def stop(self) -> None:
        """Stop the writer and write what is still queued (on shutdown).

        The writer finishes the batch it is writing (a cancelled insert would lose it), unless the
        store does not answer within ``STOP_SECONDS``.
        """
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_SECONDS)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.flush()
