"""How upstream failures are classified and worded: short reasons safe to show, never a raw ``ExceptionGroup``."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import anyio
import httpx2
import mcp.types as types
from mcp.shared.exceptions import MCPError

from heimdall.mcp.runtime import MCPGatewayError, UpstreamUnavailableError

if TYPE_CHECKING:
    from heimdall.mcp.transports import RequestAuth, UpstreamTimings

__all__ = [
    "ConnectionLost",
    "SessionExpiredError",
    "UpstreamProtocolError",
    "describe_error",
    "is_failure",
    "is_transient",
    "report_crash",
]

log = logging.getLogger(__name__)


class ConnectionLost(Exception):
    """The upstream went away while connected (stream closed, process exited, ping failed)."""


class SessionExpiredError(UpstreamUnavailableError):
    """The upstream no longer knows our session (it restarted); a new session may succeed."""


class UpstreamProtocolError(MCPGatewayError):
    """The upstream answered a request with a JSON-RPC error (unknown tool, invalid params, URL elicitation...).

    ``error`` is the upstream's ``ErrorData`` as received, for front ends that pass it on verbatim.
    """

    def __init__(self, message: str, error: types.ErrorData) -> None:
        super().__init__(message)
        self.error = error

    @property
    def code(self) -> int:
        return self.error.code


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _root_os_error(exc: BaseException) -> OSError | None:
    """The innermost ``OSError`` behind ``exc`` (httpx wraps the real ``ConnectionRefusedError`` twice)."""
    seen: set[int] = set()
    found: OSError | None = None
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and (found is None or current.errno is not None):
            found = current
        current = current.__cause__ or current.__context__
    return found


def _describe_one(exc: BaseException, auth: RequestAuth | None, timings: UpstreamTimings | None) -> str:
    if isinstance(exc, MCPGatewayError):
        return exc.message
    if isinstance(exc, ConnectionLost):
        return str(exc)
    if isinstance(exc, httpx2.ConnectError):
        root = _root_os_error(exc)
        if isinstance(root, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect: {root.strerror or root}" if root is not None else f"cannot connect: {exc}"
    if isinstance(exc, httpx2.TimeoutException):
        return "the upstream did not answer in time"
    if isinstance(exc, httpx2.HTTPStatusError):
        code = exc.response.status_code
        if code in (401, 403):
            return f"credentials rejected (HTTP {code})"
        return f"HTTP {code} from the upstream"
    if isinstance(exc, httpx2.HTTPError):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TimeoutError):
        bound = f" after {timings.connect_timeout:g}s" if timings is not None else ""
        return f"timed out{bound}"
    if isinstance(exc, MCPError):
        if auth is not None and auth.challenge is not None:
            return f"credentials rejected (HTTP {auth.challenge})"
        if exc.code == types.CONNECTION_CLOSED:
            return "connection closed"
        return f"upstream error {exc.code}: {exc.message}"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _rank(exc: BaseException) -> int:
    """Which of several simultaneous failures explains the others best (lower wins)."""
    if isinstance(exc, MCPGatewayError):
        return 0
    if isinstance(exc, httpx2.HTTPError | OSError):
        return 1
    if isinstance(exc, MCPError) and exc.code != types.CONNECTION_CLOSED:
        return 3
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return 9
    return 2


def describe_error(exc: BaseException, auth: RequestAuth | None = None, timings: UpstreamTimings | None = None) -> str:
    """A short reason for a failed connection, safe to show (no tracebacks, no credentials)."""
    if auth is not None and auth.error is not None:
        return _describe_one(auth.error, None, timings)
    leaves = _leaves(exc)
    if not leaves:
        return type(exc).__name__
    return _describe_one(min(leaves, key=_rank), auth, timings)


def is_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is an upstream failure to handle (not a cancellation or an interpreter exit to let through)."""
    if not isinstance(exc, Exception | BaseExceptionGroup):
        return False
    return not any(isinstance(leaf, KeyboardInterrupt | SystemExit) for leaf in _leaves(exc))


def report_crash(task: asyncio.Task[None]) -> None:
    """Done-callback: log a background task that died of an exception nobody else will see."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("MCP upstream task %s crashed", task.get_name(), exc_info=exc)


def is_transient(exc: BaseException, auth: RequestAuth | None = None) -> bool:
    """Whether a failure looks like an unreachable or vanished upstream (worth 'disconnected', not 'error')."""
    if auth is not None and (auth.error is not None or auth.challenge is not None):
        return False
    leaves = _leaves(exc)
    best = min(leaves, key=_rank) if leaves else exc
    if isinstance(best, httpx2.HTTPStatusError):
        return best.response.status_code >= 500
    if isinstance(best, FileNotFoundError | PermissionError):
        return False
    if isinstance(best, MCPError):
        return best.code in (types.CONNECTION_CLOSED, types.REQUEST_TIMEOUT)
    return isinstance(best, httpx2.TransportError | OSError | TimeoutError | ConnectionLost)
