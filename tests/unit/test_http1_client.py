"""HTTP1Client against tiny raw asyncio servers on 127.0.0.1, under both the asyncio and uvloop loops.

Each test writes its own server handler, so the bytes on the wire are exactly what the test says.
Tests are plain functions that hand a coroutine to the ``run`` fixture, which runs it with
``asyncio.run`` or ``uvloop.run`` (and a guard deadline, so a bug shows as a failure, not a hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from heimdall.llm.http1 import HTTP1Client, UpstreamConnectionError

GUARD_SECONDS = 5.0

Runner = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    def runner(coro: Coroutine[Any, Any, Any]) -> Any:
        async def guarded() -> Any:
            return await asyncio.wait_for(coro, GUARD_SECONDS)

        if request.param == "uvloop":
            return uvloop.run(guarded())
        return asyncio.run(guarded())

    return runner


# --------------------------------------------------------------------------- raw server helpers

Handler = Callable[["RawServer", asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class RawServer:
    """Counts connections, records every request's raw bytes, and runs ``handler`` per connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.eofs = 0  # connections the client closed (seen by handlers that call ``until_eof``)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self.handler(self, reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request's exact bytes (head and Content-Length body), or None at a clean EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None
            raise
        except ConnectionError:
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        raw = head + (await reader.readexactly(length) if length else b"")
        self.requests.append(raw)
        return raw

    async def until_eof(self, reader: asyncio.StreamReader) -> None:
        """Hang until the client closes the connection, then count it."""
        with contextlib.suppress(ConnectionError):
            await reader.read()
        self.eofs += 1

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def serving(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[RawServer]:
    server = await RawServer(handler).start(ssl_context)
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def client_for(**kwargs: Any) -> AsyncIterator[HTTP1Client]:
    client = HTTP1Client(**kwargs)
    try:
        yield client
    finally:
        await client.close()


def ok(body: bytes = b"ok", *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def serve_ok(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
    """Keep-alive server: answer every request with ``ok`` until the client closes."""
    while await server.read_request(reader) is not None:
        writer.write(ok(b"ok-%d" % len(server.requests)))
        await writer.drain()
    server.eofs += 1


async def settle() -> None:
    """Let loopback FIN/EOF notifications propagate through both ends (a few loop iterations)."""
    for _ in range(5):
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- request serialization


def test_request_bytes_with_explicit_port(run: Runner) -> None:
    async def main() -> None:
        async with serving(serve_ok) as server, client_for() as client:
            response = await client.request(
                "POST",
                server.url("/v1/chat/completions?api-version=2024-06-01&x=a%20b"),
                {"Authorization": "Bearer sk-test", "Content-Type": "application/json", "X-Trace": "t1"},
                b'{"model":"m"}',
            )
            assert await response.read() == b"ok-1"
            response.release()
            assert server.requests == [
                b"POST /v1/chat/completions?api-version=2024-06-01&x=a%20b HTTP/1.1\r\n"
                + f"Host: 127.0.0.1:{server.port}\r\n".encode()
                + b"Content-Length: 13\r\n"
                b"Authorization: Bearer sk-test\r\n"
                b"Content-Type: application/json\r\n"
                b"X-Trace: t1\r\n"
                b"\r\n"
                b'{"model":"m"}'
            ]

    run(main())


def test_request_bytes_without_port_empty_path_and_ipv6_host(run: Runner) -> None:
    async def main() -> None:
        async with serving(serve_ok) as server, client_for() as client:
            keys: list[tuple[str, int, bool]] = []
            connect = client._connect

            async def redirect(key: tuple[str, int, bool], limit: float | None) -> Any:
                keys.append(key)  # the pool key the URL produced; the socket still goes to the test server
                return await connect(("127.0.0.1", server.port, key[2]), limit)

            client._connect = redirect  # type: ignore[method-assign,assignment]

            response = await client.request("GET", "http://api.example.test", {})
            assert await response.read() == b"ok-1"
            response.release()
            response = await client.request("DELETE", "http://[::1]:8080/x?y=1", {"A": "b"})
            assert await response.read() == b"ok-2"
            response.release()

            assert keys == [("api.example.test", 80, False), ("::1", 8080, False)]
            assert server.requests == [
                b"GET / HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 0\r\n\r\n",
                b"DELETE /x?y=1 HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 0\r\nA: b\r\n\r\n",
            ]

    run(main())


# --------------------------------------------------------------------------- response bodies


def test_content_length_response(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Request-Id: abc\r\n")
        writer.write(b"Content-Length: 11\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b'{"a":')
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b'"bcd"}')
        await server.until_eof(reader)

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            response = await client.request("GET", server.url(), {})
            assert response.status == 201
            assert (b"content-type", b"application/json") in response.headers
            assert (b"x-request-id", b"abc") in response.headers
            assert await response.read() == b'{"a":"bcd"}'
            response.release()

    run(main())


def test_chunked_response_read_joins_chunks(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(CHUNKED_HEAD + chunk(b"alpha "))
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(chunk(b"beta ") + chunk(b"gamma"))
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(LAST_CHUNK)
        await server.until_eof(reader)

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            response = await client.request("GET", server.url(), {})
            assert response.status == 200
            assert await response.read() == b"alpha beta gamma"
            response.release()

    run(main())


def test_chunked_response_streams_chunks_as_they_arrive(run: Runner) -> None:
    async def main() -> None:
        gate = asyncio.Event()
        second_sent = False

        async def handler(
            server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int
        ) -> None:
            nonlocal second_sent
            await server.read_request(reader)
            writer.write(CHUNKED_HEAD + chunk(b"first"))
            await writer.drain()
            await gate.wait()  # the server pauses until the client has seen the first chunk
            second_sent = True
            writer.write(chunk(b"second"))
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(chunk(b"third") + LAST_CHUNK)
            await server.until_eof(reader)

        async with serving(handler) as server, client_for() as client:
            response = await client.request("GET", server.url(), {})
            stream = response.chunks()
            # A client that buffered the whole body would never get here: the server is waiting on us.
            first = await asyncio.wait_for(anext(stream), 1.0)
            assert first == b"first"
            assert not second_sent
            gate.set()
            rest = [piece async for piece in stream]
            assert second_sent
            assert b"".join(rest) == b"secondthird"
            assert rest[0] == b"second"
            response.release()

    run(main())


def test_body_delimited_by_connection_close(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"world")
        await writer.drain()
        # returning closes the connection, which ends the body

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            response = await client.request("GET", server.url(), {})
            assert response.status == 200
            assert await response.read() == b"hello world"
            response.release()
            # The connection ended with the body, so the next request needs (and gets) a new one.
            response = await client.request("GET", server.url(), {})
            assert await response.read() == b"hello world"
            response.release()
            assert server.connections == 2

    run(main())


def test_lines_split_across_chunks_and_crlf(run: Runner) -> None:
    pieces = [b"data: a\r", b"\ndata: b", b"\r\n\r\nda", b"ta: c\n", b"\n", b"tail\r"]

    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(CHUNKED_HEAD)
        for piece in pieces:
            writer.write(chunk(piece))
            await writer.drain()
            await asyncio.sleep(0.005)
        writer.write(LAST_CHUNK)
        await server.until_eof(reader)

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            response = await client.request("GET", server.url(), {})
            lines = [line async for line in response.lines()]
            assert lines == [b"data: a", b"data: b", b"", b"data: c", b"", b"tail"]
            response.release()

    run(main())


# --------------------------------------------------------------------------- keep-alive pool


def test_keep_alive_reuses_one_connection(run: Runner) -> None:
    async def main() -> None:
        async with serving(serve_ok) as server, client_for() as client:
            for n in (1, 2, 3):
                response = await client.request("POST", server.url("/a"), {}, b"x")
                assert await response.read() == b"ok-%d" % n
                response.release()
            assert server.connections == 1
            assert len(server.requests) == 3

    run(main())


def test_connection_close_response_is_not_reused(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        # Says "Connection: close" but keeps the socket open: only the client's honouring it closes it.
        while await server.read_request(reader) is not None:
            writer.write(ok(b"bye", "Connection: close"))
            await writer.drain()
        server.eofs += 1

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            for _ in range(2):
                response = await client.request("GET", server.url(), {})
                assert await response.read() == b"bye"
                response.release()
            await settle()
            assert server.connections == 2
            assert server.eofs == 2  # the client closed both instead of pooling them

    run(main())


def test_release_before_body_complete_closes_connection(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        if i == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            await writer.drain()
            await server.until_eof(reader)
            return
        writer.write(ok(b"fresh"))
        await server.until_eof(reader)

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            response = await client.request("GET", server.url(), {})
            assert response.status == 200
            response.release()  # 7 body bytes still owed: this connection cannot carry another request
            await settle()
            assert server.eofs == 1
            response = await client.request("GET", server.url(), {})
            assert await response.read() == b"fresh"
            response.release()
            assert server.connections == 2

    run(main())


def test_release_mid_stream_closes_connection(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(CHUNKED_HEAD + chunk(b"one"))
        await writer.drain()
        await server.until_eof(reader)

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            response = await client.request("GET", server.url(), {})
            stream = cast(AsyncGenerator[bytes, None], response.chunks())
            assert await anext(stream) == b"one"
            await stream.aclose()
            response.release()
            await settle()
            assert server.eofs == 1

    run(main())


def test_idle_connection_closed_by_server_is_replaced(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(ok(b"ok-%d" % i))  # keep-alive response, then the server drops the idle connection
        await writer.drain()

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            response = await client.request("GET", server.url(), {})
            assert await response.read() == b"ok-1"
            response.release()
            await settle()  # the client has seen the close by now
            response = await client.request("GET", server.url(), {})
            assert await response.read() == b"ok-2"
            response.release()
            assert server.connections == 2
            assert len(server.requests) == 2

    run(main())


def test_stale_pooled_connection_is_retried_once(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(ok(b"ok-%d" % i))
        await writer.drain()
        if i == 1:
            # The server timed the idle connection out just as the next request arrived: close, no answer.
            await server.read_request(reader)
            return
        await server.until_eof(reader)

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            response = await client.request("GET", server.url("/1"), {})
            assert await response.read() == b"ok-1"
            response.release()
            response = await client.request("GET", server.url("/2"), {})
            assert await response.read() == b"ok-2"
            response.release()
            assert server.connections == 2
            assert [r.split(b" ")[1] for r in server.requests] == [b"/1", b"/2", b"/2"]

    run(main())


def test_partial_headers_then_close_on_pooled_connection_is_not_retried(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(ok(b"ok-%d" % i))
        await writer.drain()
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")
        await writer.drain()

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            response = await client.request("GET", server.url(), {})
            assert await response.read() == b"ok-1"
            response.release()
            with pytest.raises(UpstreamConnectionError):
                await client.request("POST", server.url(), {}, b"not idempotent")
            await settle()
            assert server.connections == 1
            assert len(server.requests) == 2

    run(main())


def test_partial_body_then_close_on_pooled_connection_is_not_retried(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(ok(b"ok-%d" % i))
        await writer.drain()
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            response = await client.request("GET", server.url(), {})
            assert await response.read() == b"ok-1"
            response.release()
            response = await client.request("POST", server.url(), {}, b"x")
            assert response.status == 200
            with pytest.raises(UpstreamConnectionError):
                await response.read()
            response.release()
            await settle()
            assert server.connections == 1
            assert len(server.requests) == 2

    run(main())


def test_close_closes_pooled_connections(run: Runner) -> None:
    async def main() -> None:
        async with serving(serve_ok) as server:
            client = HTTP1Client()
            responses = await asyncio.gather(*(client.request("GET", server.url(), {}) for _ in range(2)))
            for response in responses:
                await response.read()
                response.release()
            assert server.connections == 2  # concurrent requests each need their own connection
            await settle()
            assert server.eofs == 0  # both are idle in the pool
            await client.close()
            await settle()
            assert server.eofs == 2
            # A closed client still answers, but no longer pools.
            response = await client.request("GET", server.url(), {})
            assert await response.read() == b"ok-3"
            response.release()
            await settle()
            assert server.connections == 3
            assert server.eofs == 3

    run(main())


def test_pool_keeps_at_most_max_idle_per_host(run: Runner) -> None:
    async def main() -> None:
        async with serving(serve_ok) as server, client_for(max_idle_per_host=1) as client:
            responses = await asyncio.gather(*(client.request("GET", server.url(), {}) for _ in range(2)))
            for response in responses:
                await response.read()
                response.release()
            await settle()
            assert server.connections == 2
            assert server.eofs == 1  # the second connection released found the pool full and was closed
            response = await client.request("GET", server.url(), {})
            assert await response.read() == b"ok-3"
            response.release()
            assert server.connections == 2  # the pooled one was reused

    run(main())


# --------------------------------------------------------------------------- timeouts


def test_timeout_waiting_for_headers(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        await server.until_eof(reader)  # never answers

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(TimeoutError):
                await client.request("GET", server.url(), {}, timeout=0.1)
            assert 0.09 <= loop.time() - start < 0.5
            await settle()
            assert server.eofs == 1  # the timed-out connection was closed, not pooled

    run(main())


def test_timeout_waiting_for_body(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await server.until_eof(reader)

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            loop = asyncio.get_running_loop()
            start = loop.time()
            response = await client.request("GET", server.url(), {}, timeout=0.15)
            assert response.status == 200
            with pytest.raises(TimeoutError):
                await response.read()
            assert 0.14 <= loop.time() - start < 0.5
            response.release()
            await settle()
            assert server.eofs == 1

    run(main())


def test_read_timeout_between_stream_chunks(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(CHUNKED_HEAD + chunk(b"data: 1\n\n"))
        await writer.drain()
        await server.until_eof(reader)  # then stalls

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            loop = asyncio.get_running_loop()
            response = await client.request("GET", server.url(), {}, timeout=5, read_timeout=0.1)
            received: list[bytes] = []
            start = loop.time()
            with pytest.raises(TimeoutError):
                async for piece in response.chunks():
                    received.append(piece)
            assert received == [b"data: 1\n\n"]
            assert 0.09 <= loop.time() - start < 0.5
            response.release()

    run(main())


def test_read_timeout_is_per_chunk_not_total(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(CHUNKED_HEAD)
        for n in range(6):
            writer.write(chunk(b"data: %d\n\n" % n))
            await writer.drain()
            await asyncio.sleep(0.04)
        writer.write(LAST_CHUNK)
        await server.until_eof(reader)

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            loop = asyncio.get_running_loop()
            start = loop.time()
            response = await client.request("GET", server.url(), {}, timeout=5, read_timeout=0.1)
            lines = [line async for line in response.lines() if line]
            elapsed = loop.time() - start
            assert lines == [b"data: %d" % n for n in range(6)]
            assert elapsed > 0.2  # well past read_timeout in total, without a timeout
            response.release()

    run(main())


# --------------------------------------------------------------------------- connection failures


def test_connection_refused(run: Runner) -> None:
    async def main() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        async with client_for() as client:
            with pytest.raises(UpstreamConnectionError, match="cannot connect"):
                await client.request("GET", f"http://127.0.0.1:{port}/", {}, timeout=1)

    run(main())


def test_garbage_status_line(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(b"SPAM SPAM SPAM\r\n\r\n")
        await writer.drain()
        await server.until_eof(reader)

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            with pytest.raises(UpstreamConnectionError, match="invalid HTTP response"):
                await client.request("GET", server.url(), {}, timeout=1)
            await settle()
            assert server.eofs == 1
            assert len(server.requests) == 1

    run(main())


def test_garbage_chunk_framing(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(CHUNKED_HEAD + chunk(b"fine"))
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"zz-not-hex\r\n")
        await writer.drain()
        await server.until_eof(reader)

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            response = await client.request("GET", server.url(), {}, timeout=1)
            with pytest.raises(UpstreamConnectionError, match="invalid HTTP response"):
                await response.read()
            response.release()
            await settle()
            assert server.eofs == 1

    run(main())


def test_server_closes_before_headers(run: Runner) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)  # then close without a byte of response

    async def main() -> None:
        async with serving(handler) as server, client_for() as client:
            with pytest.raises(UpstreamConnectionError, match="closed the connection"):
                await client.request("GET", server.url(), {}, timeout=1)
            assert server.connections == 1  # a fresh connection is never retried
            assert len(server.requests) == 1

    run(main())


# --------------------------------------------------------------------------- TLS


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_tls_request_with_trusted_self_signed_cert(run: Runner, tmp_path: Path) -> None:
    cert_path, key_path = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    client_ctx = ssl.create_default_context(cafile=str(cert_path))

    async def main() -> None:
        async with serving(serve_ok, server_ctx) as server, client_for(ssl_context=client_ctx) as client:
            for n in (1, 2):
                response = await client.request("POST", server.url("/v1/x", scheme="https"), {}, b"hi", timeout=2)
                assert response.status == 200
                assert await response.read() == b"ok-%d" % n
                response.release()
            assert server.connections == 1  # TLS connections are pooled too
            assert server.requests[0] == (
                b"POST /v1/x HTTP/1.1\r\n"
                + f"Host: 127.0.0.1:{server.port}\r\n".encode()
                + b"Content-Length: 2\r\n\r\nhi"
            )

    run(main())


def test_tls_untrusted_cert_is_a_connection_error(run: Runner, tmp_path: Path) -> None:
    cert_path, key_path = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)

    async def main() -> None:
        async with (
            serving(serve_ok, server_ctx) as server,
            client_for(ssl_context=ssl.create_default_context()) as client,
        ):
            with pytest.raises(UpstreamConnectionError, match="cannot connect"):
                await client.request("GET", server.url(scheme="https"), {}, timeout=2)

    run(main())
