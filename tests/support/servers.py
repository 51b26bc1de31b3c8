"""Run an ASGI app under a real uvicorn server in a background thread.

End-to-end tests talk to the gateway (and to the fake upstream providers) over real sockets on 127.0.0.1::

    with serve_in_thread(app) as server:
        httpx.get(f"{server.url}/healthz")

The server runs in a daemon thread with its own asyncio event loop. ``port=0`` (the default) lets the OS pick a free
port; the real port is read back from the listening socket once uvicorn has started.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Self

import uvicorn
from uvicorn._types import ASGIApplication

__all__ = ["RunningServer", "ServerThread", "free_port", "serve_in_thread"]

HTTPImpl = Literal["h11", "httptools"]
# What uvicorn.Config accepts (minus import strings): also covers apps typed with Starlette's looser ASGI types.
App = ASGIApplication | Callable[..., Any]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago (the usual small race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerThread:
    """A uvicorn server running ``app`` in a daemon thread; also a context manager.

    ``start()`` blocks until the server is listening (or raises if startup failed); ``stop()`` asks uvicorn to shut
    down gracefully, forces the exit if that takes longer than ``timeout``, and joins the thread.
    """

    def __init__(
        self,
        app: App,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        http: HTTPImpl = "h11",
        lifespan: Literal["auto", "on", "off"] = "auto",
        log_level: str = "warning",
        graceful_shutdown_timeout: float = 1.0,
    ) -> None:
        self.host = host
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            loop="asyncio",
            http=http,
            ws="none",
            lifespan=lifespan,
            log_level=log_level,
            log_config=None,  # leave the process-wide logging configuration alone
            access_log=False,
            # uvicorn types this as int but only hands it to asyncio.wait_for, which accepts floats.
            timeout_graceful_shutdown=graceful_shutdown_timeout,  # type: ignore[arg-type]
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{host}:{port}", daemon=True)
        self._error: BaseException | None = None
        self._port: int | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as exc:  # includes uvicorn's sys.exit() on startup failure
            self._error = exc

    def start(self, timeout: float = 10.0) -> Self:
        """Start the thread and wait until the server is listening."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"uvicorn server on {self.host} failed to start") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"uvicorn server on {self.host} did not start within {timeout}s")
            time.sleep(0.005)
        sockets = self._server.servers[0].sockets
        self._port = sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Shut the server down gracefully and join the thread (bounded by ``timeout`` seconds)."""
        if not self._thread.is_alive():
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(2.0)
        if self._thread.is_alive():
            raise RuntimeError(f"uvicorn server on {self.url} did not stop within {timeout}s")

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and self._server.started and not self._server.should_exit

    # -- addresses -------------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server has not been started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    # -- context manager -------------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        if not self._thread.is_alive() and self._port is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else f"{self.host}:?"
        return f"<ServerThread {where} running={self.running}>"


RunningServer = ServerThread


def serve_in_thread(
    app: App,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    http: HTTPImpl = "h11",
    lifespan: Literal["auto", "on", "off"] = "auto",
    startup_timeout: float = 10.0,
) -> RunningServer:
    """Start ``app`` under uvicorn in a background thread and return once it is listening."""
    server = ServerThread(app, host, port, http=http, lifespan=lifespan)
    return server.start(startup_timeout)
