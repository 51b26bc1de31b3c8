"""Time to first byte / first SSE frame of sequential streaming requests over one keep-alive connection."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.procs import LOOPBACK


@dataclass(frozen=True)
class TtfbResult:
    requests: int
    headers_ms: float  # median time to the status line
    first_frame_ms: float  # median time to the first ``data:`` frame
    total_ms: float  # median time to the end of the response
    first_frame_p90_ms: float

    def to_json(self) -> dict[str, Any]:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in self.__dict__.items()}


class _Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(LOOPBACK, self.port)
        return self.reader, self.writer

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()
        self.reader = self.writer = None


async def _one(conn: _Connection, request: bytes) -> tuple[float, float, float]:
    """(headers, first frame, total) in seconds for one request."""
    reader, writer = await conn.streams()
    start = time.perf_counter()
    writer.write(request)
    await writer.drain()
    status_line = await reader.readline()
    t_headers = time.perf_counter() - start
    if not status_line.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected response: {status_line!r}")
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    seen = bytearray()
    t_frame = -1.0

    def consume(data: bytes) -> None:
        nonlocal t_frame
        if t_frame < 0:
            seen.extend(data)
            if b"data:" in seen:
                t_frame = time.perf_counter() - start

    if headers.get("transfer-encoding") == "chunked":
        while size := int((await reader.readline()).split(b";")[0], 16):
            consume(await reader.readexactly(size))
            await reader.readexactly(2)
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):  # trailers
            pass
    elif "content-length" in headers:
        remaining = int(headers["content-length"])
        while remaining:
            data = await reader.read(min(remaining, 65536))
            if not data:
                raise RuntimeError("connection closed mid-body")
            remaining -= len(data)
            consume(data)
    else:
        while data := await reader.read(65536):
            consume(data)
        await conn.close()
    total = time.perf_counter() - start
    if headers.get("connection") == "close":
        await conn.close()
    return t_headers, t_frame if t_frame >= 0 else total, total


async def _measure(port: int, path: str, body: bytes, count: int, warmup: int) -> TtfbResult:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    conn = _Connection(port)
    samples: list[tuple[float, float, float]] = []
    try:
        for index in range(warmup + count):
            sample = await _one(conn, request)
            if index >= warmup:
                samples.append(sample)
    finally:
        await conn.close()
    frames = sorted(s[1] for s in samples)
    return TtfbResult(
        requests=count,
        headers_ms=statistics.median(s[0] for s in samples) * 1e3,
        first_frame_ms=statistics.median(frames) * 1e3,
        total_ms=statistics.median(s[2] for s in samples) * 1e3,
        first_frame_p90_ms=frames[int(0.9 * (len(frames) - 1))] * 1e3,
    )


def measure(port: int, path: str, body: bytes, count: int = 200, warmup: int = 20) -> TtfbResult:
    return asyncio.run(_measure(port, path, body, count, warmup))
