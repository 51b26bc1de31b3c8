"""Run the demo: the gateway, the notes service and the scripted model, in one process, on loopback.

Order of events:

1. Bind three sockets on 127.0.0.1 (the gateway on ``port``: 8080 when free, else any), so every
   URL is known before anything starts.
2. Write the demo's config.json into a throwaway app dir (SQLite store, generated encryption key)
   and start the three uvicorn servers on one event loop.
3. Run the admin's one-time test login of the notes server, headlessly, through the admin API
   (initiate-verification → the notes login as ``admin`` → the gateway's callback → complete-oauth):
   per-user servers from config.json wait for it before anyone can use them.
4. Print the walkthrough, and serve until Ctrl-C (or SIGTERM): the gateway stops first, then the
   two upstreams; a second Ctrl-C forces the exit. The app dir is deleted unless ``keep``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from pydantic import SecretStr

from heimdall.app import create_app
from heimdall.demo.config import NOTES_CLIENT_ID, demo_config
from heimdall.demo.notes import NotesService
from heimdall.demo.scripted_model import create_scripted_model_app
from heimdall.demo.walkthrough import DemoInfo, render
from heimdall.settings import Settings

__all__ = ["DEFAULT_PORT", "DEMO_NOTES", "DemoError", "DemoOptions", "run_demo"]

HOST = "127.0.0.1"
DEFAULT_PORT = 8080
STARTUP_TIMEOUT = 60.0
#: Each demo user starts with notes of their own, so that isolation shows at the first call.
DEMO_NOTES = {
    "alice": ["Buy oat milk", "Send the Q3 report to Dana"],
    "bob": ["Call the plumber about the kitchen tap", "Dentist on Tuesday at 10:00"],
}

log = logging.getLogger("heimdall.demo")


class DemoError(Exception):
    """The demo could not start; the message says why."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    #: The gateway's port; None: 8080 when free, else any free port; 0: any free port.
    port: int | None = None
    keep: bool = False
    log_level: str = "warning"


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the runner (three servers share one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    return sock


def _gateway_socket(port: int | None) -> socket.socket:
    if port is not None:
        try:
            return _listening_socket(port)
        except OSError as exc:
            raise DemoError(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}") from None
    try:
        return _listening_socket(DEFAULT_PORT)
    except OSError:
        return _listening_socket(0)


def _url(sock: socket.socket) -> str:
    return f"http://{HOST}:{sock.getsockname()[1]}"


def _server(app: object, log_level: str) -> _Server:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        lifespan="on",
        log_level=log_level,
        log_config=None,
        access_log=False,
        ws="none",
        timeout_graceful_shutdown=5,
    )
    return _Server(config)


async def _location(browser: httpx.AsyncClient, url: str, step: str) -> str:
    response = await browser.get(url)
    if response.status_code != 302:
        raise DemoError(f"the notes test login failed at {step}: HTTP {response.status_code}: {response.text[:200]}")
    return str(response.headers["location"])


async def verify_notes(gateway_url: str, admin_token: str) -> str:
    """The admin's test login of the notes server (signing in to notes as ``admin``); returns the result."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with (
        httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=30, trust_env=False) as api,
        httpx.AsyncClient(timeout=30, trust_env=False) as browser,
    ):
        started = await api.post(f"/api/mcp/client/{NOTES_CLIENT_ID}/initiate-verification")
        if started.status_code != 200:
            raise DemoError(f"cannot start the notes test login: HTTP {started.status_code}: {started.text[:200]}")
        pending = started.json()
        login = await _location(browser, pending["authorize_url"], "the notes authorize endpoint")
        callback = await _location(browser, f"{login}&user=admin", "the notes login page")
        landed = await browser.get(callback)
        if landed.status_code != 200:
            raise DemoError(f"the gateway's OAuth callback answered HTTP {landed.status_code}: {landed.text[:200]}")
        done = await api.post(f"/api/mcp/client/{pending['oauth_config_id']}/complete-oauth")
        if done.status_code != 200:
            raise DemoError(f"the notes verification failed: HTTP {done.status_code}: {done.text[:200]}")
        return str(done.json().get("message", "verified"))


async def _started(servers: list[_Server], tasks: list[asyncio.Task[None]]) -> None:
    deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT
    while not all(server.started for server in servers):
        if any(task.done() for task in tasks):
            raise DemoError("a server failed to start (see the log above)")
        if asyncio.get_running_loop().time() > deadline:
            raise DemoError(f"the servers did not start within {STARTUP_TIMEOUT:g} seconds")
        await asyncio.sleep(0.02)


async def _get_ready(servers: list[_Server], tasks: list[asyncio.Task[None]], info: DemoInfo) -> None:
    """Wait for the servers, verify the notes server, print the walkthrough."""
    await _started(servers, tasks)
    log.info("%s", await verify_notes(info.gateway_url, info.admin_token))
    print(render(info), flush=True)


def _on_signals(stop: asyncio.Event, servers: list[_Server]) -> None:
    """First Ctrl-C or SIGTERM: stop cleanly; a second one: stop now."""

    def handle() -> None:
        if stop.is_set():
            for server in servers:
                server.force_exit = True
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no loop signal handlers on Windows
            loop.add_signal_handler(sig, handle)


async def _shutdown(servers: list[_Server], tasks: list[asyncio.Task[None]]) -> None:
    """The gateway first (it closes its sessions with the upstreams), then the upstreams."""
    for server, task in zip(servers, tasks, strict=True):
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)


async def _serve(options: DemoOptions, app_dir: Path) -> None:
    gateway_sock, notes_sock, model_sock = _gateway_socket(options.port), _listening_socket(0), _listening_socket(0)
    admin_token = "hk-admin-demo-" + secrets.token_urlsafe(18)
    info = DemoInfo(
        gateway_url=_url(gateway_sock),
        notes_url=_url(notes_sock),
        model_url=_url(model_sock),
        admin_token=admin_token,
        virtual_key="sk-bf-demo-" + secrets.token_urlsafe(18),
        app_dir=app_dir,
        keep=options.keep,
    )
    notes = NotesService(notes=DEMO_NOTES)
    notes.bind(info.notes_url)
    config_path = app_dir / "config.json"
    config = demo_config(model_url=info.model_url, notes_mcp_url=notes.mcp_url, virtual_key=info.virtual_key)
    config_path.write_text(json.dumps(config, indent=2))
    settings = Settings(
        app_dir=app_dir,
        config=config_path,
        host=HOST,
        port=gateway_sock.getsockname()[1],
        db_url=None,
        public_url=None,
        redis_url=None,
        encryption_key=None,
        admin_token=SecretStr(admin_token),
        log_level=options.log_level,
    )
    servers = [
        _server(create_app(settings), options.log_level),
        _server(notes.app(), options.log_level),
        _server(create_scripted_model_app(), options.log_level),
    ]
    sockets = [gateway_sock, notes_sock, model_sock]
    tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in zip(servers, sockets, strict=True)]
    stop = asyncio.Event()
    _on_signals(stop, servers)
    stopped = asyncio.create_task(stop.wait())
    ready = asyncio.create_task(_get_ready(servers, tasks, info))
    try:
        await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            ready.result()  # raises what went wrong while starting
            await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
        stopped.cancel()
        print("\nStopping the demo…", file=sys.stderr, flush=True)
        await _shutdown(servers, tasks)


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if level.lower() != "debug":
        for noisy in ("httpx", "httpx2", "mcp"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    # The notes server waits for its verification only until _serve runs it, a moment after the start.
    logging.getLogger("heimdall.mcp.seed").setLevel(logging.ERROR)


def run_demo(options: DemoOptions) -> int:
    """Run until interrupted; the exit status: 0 after Ctrl-C, 1 when the demo could not start."""
    _configure_logging(options.log_level)
    app_dir = Path(tempfile.mkdtemp(prefix="heimdall-demo-"))
    try:
        asyncio.run(_serve(options, app_dir))
    except KeyboardInterrupt:  # Ctrl-C before the servers had started
        return 130
    except DemoError as exc:
        print(f"heimdall demo: {exc}", file=sys.stderr)
        return 1
    except SystemExit:  # uvicorn exits this way when an app's startup fails; the log says why
        print("heimdall demo: a server failed to start", file=sys.stderr)
        return 1
    finally:
        if options.keep:
            print(f"The app dir is kept: {app_dir}", file=sys.stderr)
        else:
            shutil.rmtree(app_dir, ignore_errors=True)
    return 0
