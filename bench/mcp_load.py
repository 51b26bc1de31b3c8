"""MCP load generator: N concurrent streamable-HTTP sessions looping ``tools/call`` (raw HTTP/1.1, uvloop).

Runs as a child process of the bench (``python -m bench.mcp_load --port N --tool echo --sessions 16
--duration 5``) so that its CPU never counts against the gateway. No SDK client on this side: each
session is one keep-alive TCP connection speaking the streamable HTTP transport directly::

    POST initialize                 -> mcp-session-id header (SSE or JSON answer)
    POST notifications/initialized  -> 202
    POST tools/call  (repeated)     -> the SSE ``data:`` line or the JSON body holds the result
    DELETE                          -> end of the session

Handshake with the parent over stdin/stdout, one JSON object per line: after opening the sessions
and checking one call per session, the child prints ``{"ready": ...}`` (or ``{"error": ...}`` and
exits 1), waits for ``go`` on stdin, runs for ``--duration`` seconds and prints the result:
``calls``, ``errors``, ``elapsed_s``, ``cpu_s`` (this process) and every latency in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = "2025-11-25"
ECHO_TEXT = "hello from the heimdall bench"


class CallError(RuntimeError):
    """A request did not produce the expected JSON-RPC result."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def _read_response(reader: asyncio.StreamReader) -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if status in (204, 304) or status < 200:
        return Response(status, headers, b"")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts: list[bytes] = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append((await reader.readexactly(size + 2))[:-2])
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
            pass
        return Response(status, headers, b"".join(parts))
    if "content-length" in headers:
        return Response(status, headers, await reader.readexactly(int(headers["content-length"])))
    return Response(status, headers, await reader.read())  # delimited by the connection closing


def _rpc_message(response: Response, request_id: int) -> dict[str, Any]:
    """The JSON-RPC response to ``request_id`` from an SSE stream or a JSON body."""
    if response.status != 200:
        raise CallError(f"HTTP {response.status}: {response.body[:500]!r}")
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.body.splitlines():
            if line.startswith(b"data:"):
                message = json.loads(line[5:])
                if isinstance(message, dict) and message.get("id") == request_id:
                    return message
        raise CallError(f"no response to request {request_id} in the SSE stream: {response.body[:500]!r}")
    message = json.loads(response.body)
    if not isinstance(message, dict) or message.get("id") != request_id:
        raise CallError(f"unexpected JSON body: {response.body[:500]!r}")
    return message


class Session:
    """One MCP session over one keep-alive connection; reconnects (same session) if the server closed it."""

    def __init__(self, host: str, port: int, path: str, tool: str) -> None:
        self.host, self.port, self.path, self.tool = host, port, path, tool
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.session_id: str | None = None
        self.protocol_version = PROTOCOL_VERSION
        self.next_id = 0
        self.reconnects = 0
        arguments = {"text": ECHO_TEXT} if tool.endswith("echo") else {"a": 2, "b": 40}
        self.expected = ECHO_TEXT if tool.endswith("echo") else "42"
        self._params = json.dumps({"name": tool, "arguments": arguments}, separators=(",", ":")).encode()
        self._head = b""

    async def _connect(self) -> None:
        await self._disconnect()
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def _disconnect(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    def _build_head(self) -> None:
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            "Accept: application/json, text/event-stream",
        ]
        if self.session_id:
            lines += [f"Mcp-Session-Id: {self.session_id}", f"Mcp-Protocol-Version: {self.protocol_version}"]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode()

    async def _send(self, body: bytes, method: str = "POST") -> Response:
        if self.reader is None or self.writer is None or self.reader.at_eof():
            if self.reader is not None:
                self.reconnects += 1
            await self._connect()
        assert self.reader is not None and self.writer is not None
        if method == "POST":
            self.writer.write(self._head + b"%d\r\n\r\n" % len(body) + body)
        else:
            self.writer.write(self._head.replace(b"POST ", method.encode() + b" ", 1) + b"0\r\n\r\n")
        response = await _read_response(self.reader)
        if response.headers.get("connection", "").lower() == "close":
            await self._disconnect()
        return response

    def _request(self, method: str, params: bytes | None) -> tuple[int, bytes]:
        self.next_id += 1
        body = b'{"jsonrpc":"2.0","id":%d,"method":"%s"' % (self.next_id, method.encode())
        return self.next_id, body + (b',"params":' + params if params is not None else b"") + b"}"

    async def start(self) -> None:
        """Open the connection and the MCP session (initialize + notifications/initialized)."""
        self.session_id = None
        self._build_head()
        client = {"name": "heimdall-bench", "version": "1"}
        params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": client}
        request_id, body = self._request("initialize", json.dumps(params).encode())
        response = await self._send(body)
        result = _rpc_message(response, request_id).get("result")
        if not isinstance(result, dict):
            raise CallError(f"initialize failed: {response.body[:500]!r}")
        self.session_id = response.headers.get("mcp-session-id")
        self.protocol_version = str(result.get("protocolVersion", PROTOCOL_VERSION))
        self._build_head()
        response = await self._send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        if response.status not in (200, 202):
            raise CallError(f"notifications/initialized: HTTP {response.status}: {response.body[:500]!r}")

    async def call(self) -> None:
        """One ``tools/call``; raises CallError unless it returned the expected text."""
        request_id, body = self._request("tools/call", self._params)
        message = _rpc_message(await self._send(body), request_id)
        result = message.get("result")
        if not isinstance(result, dict) or result.get("isError"):
            raise CallError(f"tools/call {self.tool}: {json.dumps(message)[:500]}")
        content = result.get("content") or [{}]
        if content[0].get("text") != self.expected:
            raise CallError(f"tools/call {self.tool}: unexpected content {json.dumps(content)[:500]}")

    async def recover(self) -> None:
        """After a failed call: new connection, new session."""
        await self._disconnect()
        await self.start()

    async def close(self) -> None:
        try:
            if self.session_id and self.writer is not None and not self.writer.is_closing():
                await asyncio.wait_for(self._send(b"", method="DELETE"), 2)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass
        await self._disconnect()


@dataclass
class Stats:
    latencies_us: list[int] = field(default_factory=list)
    errors: int = 0
    error_sample: str | None = None


async def _worker(session: Session, deadline: float, stats: Stats) -> None:
    clock = time.perf_counter_ns
    while time.perf_counter() < deadline:
        start = clock()
        try:
            await session.call()
        except (CallError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            stats.errors += 1
            stats.error_sample = stats.error_sample or f"{type(exc).__name__}: {exc}"[:1000]
            try:
                await session.recover()
            except (CallError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                await asyncio.sleep(0.05)
            continue
        stats.latencies_us.append((clock() - start) // 1000)


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def _main(args: argparse.Namespace) -> int:
    sessions = [Session(args.host, args.port, args.path, args.tool) for _ in range(args.sessions)]
    try:
        try:
            await asyncio.gather(*(session.start() for session in sessions))
            await asyncio.gather(*(session.call() for session in sessions))  # one checked call per session
        except (CallError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            _emit({"error": f"session setup against {args.host}:{args.port}{args.path} failed: {exc!r}"})
            return 1
        _emit({"ready": True, "sessions": len(sessions)})
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if line.strip() != "go":
            return 0  # the parent went away or cancelled the run
        stats = Stats()
        cpu0, start = time.process_time(), time.perf_counter()
        deadline = start + args.duration
        await asyncio.gather(*(_worker(session, deadline, stats) for session in sessions))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
        _emit(
            {
                "calls": len(stats.latencies_us),
                "errors": stats.errors,
                "error_sample": stats.error_sample,
                "reconnects": sum(session.reconnects for session in sessions),
                "elapsed_s": elapsed,
                "cpu_s": cpu,
                "latencies_us": stats.latencies_us,
            }
        )
        return 0
    finally:
        await asyncio.gather(*(session.close() for session in sessions), return_exceptions=True)


def _loopback(text: str) -> str:
    if not ipaddress.ip_address(text).is_loopback:
        raise argparse.ArgumentTypeError("the bench load generator targets loopback addresses only")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mcp_load", description="MCP tools/call load generator.")
    parser.add_argument("--host", type=_loopback, default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/mcp")
    parser.add_argument("--tool", default="echo", help="tool name; an '…echo' tool gets {text}, others {a, b}")
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a gateway dependency
        runner = asyncio.run
    try:
        code: int = runner(_main(args))
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
