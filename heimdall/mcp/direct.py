"""Upstream MCP requests POSTed straight into an SDK-opened session over a keep-alive HTTP/1.1 pool.

Why this exists: the SDK's streamable HTTP client ends every POST's SSE answer with
``response.aclose()`` as soon as the JSON-RPC response arrives, before the chunked body's last
chunk is read, so httpx2 cannot return the connection to its pool and almost every ``tools/call``
paid for a new TCP connection (and the upstream for a new uvicorn protocol); the anyio memory
streams and per-request task groups around it cost more CPU than the call itself. Here one request
is one POST on a pooled ``HTTP1Client`` connection, and the answer is parsed as it arrives.

What stays with the SDK: ``initialize``, the GET notification stream, lists, pings and ``DELETE``
(all in ``connection.py`` / ``per_call.py``), and every SSE-transport and stdio upstream. This
module only sends single requests into a session the SDK opened, as MCP 2025-11-25 Basic /
Transports §Streamable HTTP allows:

* §Sending Messages to the Server: each JSON-RPC message is a new POST with
  ``Accept: application/json, text/event-stream``; the server answers a request either with one
  ``application/json`` object or with an SSE stream that MAY carry requests and notifications
  before the response;
* §Session Management: the ``MCP-Session-Id`` the server assigned goes on every request, and a
  404 for it means the session is gone (the caller reconnects and retries, as before);
* §Protocol Version Header: ``MCP-Protocol-Version`` carries the negotiated version.

A server-initiated request on the answer's stream (sampling, elicitation, roots, ping) gets
exactly the reply the gateway's ``ClientSession`` would send, since it registers no callbacks
(the SDK's defaults: ``{}`` for ping, ``INVALID_REQUEST "… not supported"`` for the others),
POSTed back into the same session; ``notifications/*/list_changed`` seen there trigger the same
re-sync as on the GET stream, and other notifications are dropped as the SDK path drops them.
Results pass the same per-version checks ``ClientSession.send_request`` applies, and failures
map to the same gateway errors as ``transports.send_request``. Like the SDK client it also sends
the courtesy ``notifications/cancelled`` for a request it stops waiting for (timeout, caller
cancelled), resumes an SSE answer that breaks off with ``Last-Event-ID`` (§Resumability and
Redelivery), and refreshes the credential once on a 401 (or 403 ``insufficient_scope``).

Measured with ``make bench ARGS="--only mcp"`` (2 CPUs), together with ``fast_path.py``: gateway
CPU per ``tools/call`` from about 4.5 ms to about 0.7 ms, one upstream connection instead of one
per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import mcp.types as types
import orjson
from mcp_types import methods as wire_methods
from pydantic import BaseModel, ValidationError

from heimdall.llm.http1 import HTTP1Client, UpstreamConnectionError, UpstreamResponse, header_value
from heimdall.mcp.direct_wire import (
    answer_of,
    challenge_of,
    check_header,
    connection_reason,
    error_of,
    later_revision_fields,
)
from heimdall.mcp.runtime import CredentialResolver, MCPGatewayError, UpstreamUnavailableError
from heimdall.mcp.transports import (
    PROTOCOL_HEADERS,
    DirectTarget,
    RequestAuth,
    caller_headers,
    refresh_headers,
    resolve_headers,
)
from heimdall.mcp.upstream_errors import SessionExpiredError, UpstreamProtocolError

__all__ = ["DirectClient", "DirectFallback", "DirectTarget"]

log = logging.getLogger(__name__)

ResultT = TypeVar("ResultT", bound=BaseModel)

#: The SDK client's bound on resuming a broken SSE answer (``MAX_RECONNECTION_ATTEMPTS``).
MAX_RECONNECTION_ATTEMPTS: Final = 2
#: The SDK client's ``max_sse_event_size`` default: one SSE event may not be larger.
MAX_SSE_EVENT_SIZE: Final = 1_048_576
_ACCEPT: Final = "application/json, text/event-stream"
_LIST_CHANGED: Final = frozenset(
    {"notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed"}
)
#: What ``ClientSession`` answers server-initiated requests with when no callback is registered.
_DECLINED: Final = {
    "sampling/createMessage": "Sampling not supported",
    "elicitation/create": "Elicitation not supported",
    "roots/list": "List roots not supported",
}
#: How long a finished answer's connection may take to deliver the end of its body before it is closed.
_DRAIN_GRACE: Final = 1.0


@dataclass(slots=True)
class _Ended:
    """An SSE answer that ended before the response: where to resume it from, if anywhere."""

    last_event_id: str | None
    retry_ms: int | None
    #: Whether this stream delivered any event with an id (a resumed stream that did not is a failed attempt).
    progressed: bool = False


class DirectFallback(Exception):
    """The upstream did not process the request (it redirected it): send it through the SDK session instead."""


class _Broken(Exception):
    """The HTTP exchange failed below HTTP (connect refused, connection reset, unparsable response)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _Call:
    """One request on its way: where it goes, as whom, and what the upstream may send back besides the answer."""

    target: DirectTarget
    auth: RequestAuth
    request_id: str
    on_list_changed: Callable[[], None] | None
    #: The credential headers in use (resolved once when ``auth`` carries none; refreshed after a challenge).
    credentials: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.auth.spec.name


class DirectClient:
    """Sends single JSON-RPC requests into upstream sessions; one pool for every upstream of the gateway."""

    def __init__(self, credentials: CredentialResolver, *, max_sse_event_size: int = MAX_SSE_EVENT_SIZE) -> None:
        self._credentials = credentials
        self._http = HTTP1Client(max_idle_per_host=64)
        self._max_event = max_sse_event_size
        # String ids never collide with the SDK session's integer ids (the server keys streams by str(id)).
        self._ids = itertools.count(1)
        self._background: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(set(self._background), timeout=1.0)
        await self._http.close()

    async def request(
        self,
        target: DirectTarget,
        request: types.ClientRequest,
        result_type: type[ResultT],
        auth: RequestAuth,
        limit: float,
        *,
        budget: float | None = None,
        unavailable: Callable[[], str] = lambda: "connection closed",
        on_list_changed: Callable[[], None] | None = None,
        on_broken: Callable[[], None] | None = None,
    ) -> ResultT:
        """Send ``request`` as ``auth`` within ``limit`` seconds; the result is proxied verbatim.

        ``on_list_changed`` runs for a ``list_changed`` notification on the answer's stream;
        ``on_broken`` when the upstream could not be reached at all (the SDK session is likely gone too).

        Raises:
            DirectFallback: the upstream redirected the request without processing it.
            AuthRequired, CredentialUnavailable: what the resolver raised for this caller.
            UpstreamUnavailableError: transport failure, timeout, or credentials the upstream refused.
            SessionExpiredError: the upstream answered 404 for our session id.
            UpstreamProtocolError: the upstream answered with a JSON-RPC error.
        """
        name = auth.spec.name
        budget = limit if budget is None else budget
        data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
        method: str = data["method"]
        call = _Call(target, auth, f"heimdall-{next(self._ids)}", on_list_changed)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": call.request_id, "method": method}
        if "params" in data:
            message["params"] = data["params"]
        body = orjson.dumps(message)
        try:
            async with asyncio.timeout(limit):
                answer = await self._exchange(call, body)
        except TimeoutError:
            self._spawn(self._cancel(call, f"timed out after {limit:g}s"))
            raise UpstreamUnavailableError(f"{name} timed out after {budget:g}s") from None
        except asyncio.CancelledError:
            self._spawn(self._cancel(call, "caller cancelled"))
            raise
        except _Broken as exc:
            self._raise_credential_failure(auth)
            if on_broken is not None:
                on_broken()
            raise UpstreamUnavailableError(f"{name} is not connected: {exc.reason}") from None
        if isinstance(answer, types.ErrorData):
            self._raise_credential_failure(auth)
            if answer.code == types.CONNECTION_CLOSED:
                raise UpstreamUnavailableError(f"{name} is not connected: {unavailable()}")
            if answer.code == types.REQUEST_TIMEOUT:
                raise UpstreamUnavailableError(f"{name} timed out after {budget:g}s")
            if auth.session_gone:
                raise SessionExpiredError(f"{name} is not connected: the upstream ended the session")
            raise UpstreamProtocolError(f"{name} returned an error: {answer.message}", answer)
        return self._result(name, method, target.protocol_version, answer, result_type)

    @staticmethod
    def _raise_credential_failure(auth: RequestAuth) -> None:
        """The request failed: blame the credential first, as ``transports.send_request`` does."""
        name = auth.spec.name
        if auth.error is not None:
            if isinstance(auth.error, MCPGatewayError):
                raise auth.error
            raise UpstreamUnavailableError(f"{name}: credential lookup failed") from auth.error
        if auth.challenge is not None:
            raise UpstreamUnavailableError(f"{name} rejected the credentials (HTTP {auth.challenge})")

    @staticmethod
    def _result(name: str, method: str, version: str, raw: dict[str, Any], result_type: type[ResultT]) -> ResultT:
        """The checks ``ClientSession.send_request`` applies to a result, in its order."""
        ttl = raw.get("ttlMs")
        if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl < 0:
            raw["ttlMs"] = 0
        try:
            with contextlib.suppress(KeyError):
                wire_methods.validate_server_result(method, version, raw)
            foreign = later_revision_fields(method, version)
            if not foreign.isdisjoint(raw):
                raw = {key: value for key, value in raw.items() if key not in foreign}
            return result_type.model_validate(raw, by_name=False)
        except ValidationError as exc:
            raise UpstreamUnavailableError(f"{name} sent an invalid response ({exc.error_count()} errors)") from None

    @staticmethod
    def _headers(call: _Call, accept: str = _ACCEPT) -> dict[str, str]:
        """Forwarded caller headers, then credentials, then the transport's own (MCP 2025-11-25 transports)."""
        headers: dict[str, str] = {}
        for source in (caller_headers(call.auth.spec, call.auth.caller), call.credentials):
            for name, value in source.items():
                lower = name.lower()
                if lower not in PROTOCOL_HEADERS:
                    check_header(lower, value)
                    headers[lower] = value
        headers["accept"] = accept
        headers["content-type"] = "application/json"
        if call.target.session_id:
            headers["mcp-session-id"] = call.target.session_id
        headers["mcp-protocol-version"] = call.target.protocol_version
        return headers

    async def _post(self, call: _Call, body: bytes) -> UpstreamResponse:
        try:
            return await self._http.request("POST", call.target.url, self._headers(call), body)
        except UpstreamConnectionError as exc:
            raise _Broken(connection_reason(exc)) from None

    async def _exchange(self, call: _Call, body: bytes) -> dict[str, Any] | types.ErrorData:
        """POST the request (once more after a refreshed credential, like ``CredentialAuth``) and read the answer."""
        auth = call.auth
        if auth.headers is not None:
            call.credentials = auth.headers
        else:
            call.credentials = await resolve_headers(self._credentials, auth, auth.spec) or {}
        response = await self._post(call, body)
        challenge = challenge_of(response)
        if challenge is not None:
            auth.challenge = response.status
            self._settle(response)
            fresh = None if auth.fixed else await refresh_headers(self._credentials, auth, auth.spec, challenge or None)
            if fresh is None:
                # Answered by the recorded challenge (or resolver error), as on the SDK path.
                return types.ErrorData(code=types.INTERNAL_ERROR, message="Server returned an error response")
            if auth.headers is not None:
                auth.headers = fresh
            call.credentials = fresh
            response = await self._post(call, body)
            auth.challenge = response.status if challenge_of(response) is not None else None
        try:
            return await self._answer(call, response)
        finally:
            self._settle(response)

    async def _answer(self, call: _Call, response: UpstreamResponse) -> dict[str, Any] | types.ErrorData:
        """Map the HTTP answer like the SDK's ``StreamableHTTPTransport._handle_post_request`` does."""
        status = response.status
        content_type = (header_value(response.headers, b"content-type") or b"").decode("latin-1").lower()
        if status == 404 and call.target.session_id:
            call.auth.session_gone = True
        if 300 <= status < 400:
            raise DirectFallback(f"HTTP {status}")
        if status == 202:
            return types.ErrorData(code=types.INVALID_REQUEST, message="server answered a request with 202 Accepted")
        if status >= 400:
            if content_type.startswith("application/json"):
                error = error_of(await self._read(response))
                if error is not None:
                    return error
            if status == 404:
                if call.target.session_id is None:
                    return types.ErrorData(code=types.METHOD_NOT_FOUND, message="Not Found")
                return types.ErrorData(code=types.INVALID_REQUEST, message="Session terminated")
            return types.ErrorData(code=types.INTERNAL_ERROR, message="Server returned an error response")
        if content_type.startswith("application/json"):
            answer = answer_of(await self._read(response), call.request_id)
            if answer is None:
                raise UpstreamUnavailableError(f"{call.name} sent an invalid response")
            return answer
        if content_type.startswith("text/event-stream"):
            return await self._from_stream(call, response)
        return types.ErrorData(code=types.INVALID_REQUEST, message=f"Unexpected content type: {content_type}")

    async def _read(self, response: UpstreamResponse) -> bytes:
        try:
            return await response.read()
        except UpstreamConnectionError as exc:
            raise _Broken(connection_reason(exc)) from None

    async def _from_stream(self, call: _Call, response: UpstreamResponse) -> dict[str, Any] | types.ErrorData:
        """The response from an SSE answer, resuming the stream with ``Last-Event-ID`` if it breaks off.

        Resumption follows MCP 2025-11-25 transports §Resumability and Redelivery the way the SDK client
        does: wait ``retry`` ms (default 1 s), GET with the last event id, give up after two failed attempts.
        """
        outcome = await self._read_events(call, response, _Ended(None, None))
        attempts = 0
        while isinstance(outcome, _Ended):
            if outcome.last_event_id is None:
                return types.ErrorData(code=types.CONNECTION_CLOSED, message="SSE stream ended without a response")
            if attempts >= MAX_RECONNECTION_ATTEMPTS:
                return types.ErrorData(
                    code=types.CONNECTION_CLOSED, message="SSE stream ended and reconnection attempts were exhausted"
                )
            await asyncio.sleep((outcome.retry_ms if outcome.retry_ms is not None else 1000) / 1000)
            headers = self._headers(call, accept="text/event-stream")
            headers["last-event-id"] = outcome.last_event_id
            try:
                resumed = await self._http.request("GET", call.target.url, headers)
            except UpstreamConnectionError:
                attempts += 1
                continue
            try:
                content_type = (header_value(resumed.headers, b"content-type") or b"").decode("latin-1").lower()
                if resumed.status != 200 or not content_type.startswith("text/event-stream"):
                    attempts += 1
                    continue
                again = await self._read_events(call, resumed, _Ended(outcome.last_event_id, outcome.retry_ms))
            finally:
                self._settle(resumed)
            if isinstance(again, _Ended):
                # A stream that resumed and broke off again starts the count afresh, like the SDK's.
                attempts = 0 if again.progressed else attempts + 1
            outcome = again
        return outcome

    async def _read_events(
        self, call: _Call, response: UpstreamResponse, ended: _Ended
    ) -> dict[str, Any] | types.ErrorData | _Ended:
        """Read SSE events (WHATWG HTML §9.2.6 parsing) until the response arrives, or return where it ended."""
        event = b""
        data: list[bytes] = []
        size = 0
        try:
            async for line in response.lines():
                if line:
                    if line.startswith(b":"):
                        continue
                    name, _, value = line.partition(b":")
                    if value.startswith(b" "):
                        value = value[1:]
                    if name == b"data":
                        data.append(value)
                        size += len(value) + 1
                        if size > self._max_event:
                            raise UpstreamUnavailableError(
                                f"{call.name} sent an event larger than {self._max_event} bytes"
                            )
                    elif name == b"event":
                        event = value
                    elif name == b"id" and b"\0" not in value:
                        ended.last_event_id = value.decode("utf-8", "replace")
                        ended.progressed = True
                    elif name == b"retry" and value.isdigit():
                        ended.retry_ms = int(value)
                    continue
                payload = b"\n".join(data)
                if payload and event in (b"", b"message"):  # an empty one is a priming event (resumability)
                    answer = self._on_event(call, payload)
                    if answer is not None:
                        return answer
                event, data, size = b"", [], 0
        except UpstreamConnectionError as exc:
            log.debug("MCP client %s: SSE answer broke off: %s", call.name, exc)
        return ended

    def _on_event(self, call: _Call, payload: bytes) -> dict[str, Any] | types.ErrorData | None:
        """The answer if this event carries it; server requests get replies, list_changed triggers a re-sync."""
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamUnavailableError(f"{call.name} sent an invalid response") from None
        if not isinstance(message, dict):
            raise UpstreamUnavailableError(f"{call.name} sent an invalid response")
        method = message.get("method")
        if isinstance(method, str):
            if "id" in message:
                self._spawn(self._reply(call, message["id"], method))
            elif method in _LIST_CHANGED and call.on_list_changed is not None:
                call.on_list_changed()
            return None
        if message.get("id") != call.request_id:
            return None
        answer = answer_of(message, call.request_id)
        if answer is None:
            raise UpstreamUnavailableError(f"{call.name} sent an invalid response")
        return answer

    async def _cancel(self, call: _Call, reason: str) -> None:
        """The courtesy ``notifications/cancelled`` (MCP 2025-11-25 Utilities / Cancellation) the SDK client sends
        for a request it stops waiting for, so that the upstream can stop working on it."""
        params = {"requestId": call.request_id, "reason": reason}
        await self._notify(call, {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params})

    async def _reply(self, call: _Call, request_id: Any, method: str) -> None:
        """Answer a server-initiated request the way the gateway's ``ClientSession`` (no callbacks) would."""
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
        if method == "ping":
            reply["result"] = {}
        elif method in _DECLINED:
            reply["error"] = {"code": types.INVALID_REQUEST, "message": _DECLINED[method]}
        else:
            reply["error"] = {"code": types.METHOD_NOT_FOUND, "message": "Method not found", "data": method}
        await self._notify(call, reply)

    async def _notify(self, call: _Call, message: dict[str, Any]) -> None:
        """POST a message that gets no JSON-RPC answer (202 Accepted); failures only matter to the log."""
        try:
            response = await self._http.request(
                "POST", call.target.url, self._headers(call), orjson.dumps(message), timeout=10.0
            )
            await response.finish(_DRAIN_GRACE)
            response.release()
        except (UpstreamConnectionError, TimeoutError, MCPGatewayError) as exc:
            log.debug("MCP client %s: sending %s failed: %s", call.name, message.get("method", "a reply"), exc)

    def _settle(self, response: UpstreamResponse) -> None:
        """Let the connection go back to the pool once its body has ended, without delaying the caller."""
        self._spawn(self._drain(response))

    async def _drain(self, response: UpstreamResponse) -> None:
        try:
            await response.finish(_DRAIN_GRACE)
        finally:
            response.release()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
