"""Orchestration of the MCP part: SDK upstream process, gateway, load-generator processes, report.

Processes (all on 127.0.0.1, each in its own process group, all stopped on exit, Ctrl-C or SIGTERM)::

    python -m bench.mcp_upstream  ◀── direct ─────────────── python -m bench.mcp_load (xP)
              ▲
              └── heimdall serve (/mcp, client "bench") ◀── gateway ── python -m bench.mcp_load (xP)

For each session count and run, the direct and the gateway load run back to back (interleaved), after
one warm-up per target. CPU time of the gateway's process tree and of the upstream comes from /proc.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench import procstat
from bench.cli import Options
from bench.gateway import MCP_CLIENT_NAME, Gateway, GatewayError, mcp_gateway_config
from bench.mcp_report import LoadResult, McpResults, McpRun, render, results_json, summarize
from bench.mcp_upstream import MCP_PATH
from bench.procs import LOOPBACK, ManagedProcess, free_port, wait_ready
from bench.report import merge_json
from bench.runner import git_commit, log

REPO_ROOT = Path(__file__).resolve().parent.parent
DIRECT_TOOL = "echo"
GATEWAY_TOOL = f"{MCP_CLIENT_NAME}-{DIRECT_TOOL}"
_SETUP_TIMEOUT = 30.0


class LoadError(RuntimeError):
    """A load-generator process failed (session setup, a crash, or no answer in time)."""


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    tool: str


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


class McpUpstream:
    """``python -m bench.mcp_upstream`` on a free loopback port; ``stop()`` kills it."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self.mcp_url = f"{self.base_url}{MCP_PATH}"
        argv = [sys.executable, "-m", "bench.mcp_upstream", "--port", str(self.port)]
        self.process = ManagedProcess("mcp-upstream", argv, root / "mcp-upstream.log", env=_child_env())
        if not wait_ready(self.process, f"{self.base_url}/health", timeout=20):
            output = self.process.log_tail()
            self.process.stop()
            raise RuntimeError(f"MCP upstream did not start on {self.base_url}:\n{output or '(no output)'}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.stop()


class _LoadProcess:
    """One ``python -m bench.mcp_load`` child; talks one JSON object per line over its stdin/stdout."""

    def __init__(self, target: Target, sessions: int, duration: float, log_path: Path) -> None:
        argv = [sys.executable, "-m", "bench.mcp_load", "--host", LOOPBACK, "--port", str(target.port)]
        argv += ["--path", MCP_PATH, "--tool", target.tool, "--sessions", str(sessions), "--duration", f"{duration:g}"]
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=_child_env(),
            start_new_session=True,
        )
        self._buffer = b""

    def _stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def message(self, timeout: float) -> dict[str, Any]:
        """The next JSON line from the child; LoadError if it exits or stays silent for ``timeout`` s."""
        deadline = time.monotonic() + timeout
        fd = self._stdout().fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoadError(f"load generator silent for {timeout:g}s{self._stderr()}")
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    self.proc.wait(5)
                    raise LoadError(f"load generator exited with code {self.proc.returncode}{self._stderr()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise LoadError(f"unexpected output from the load generator: {line[:500]!r}")
        if "error" in message:
            raise LoadError(f"{message['error']}{self._stderr()}")
        return message

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def _stderr(self) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return f"\nload generator stderr:\n{text[-4000:]}" if text else ""

    def stop(self, graceful: bool = True) -> None:
        """Let it close its sessions (DELETE) and exit, else (or after 5 s) kill its process group."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        if graceful:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def _shares(sessions: int, processes: int) -> list[int]:
    count = max(1, min(sessions, processes))
    return [sessions // count + (1 if i < sessions % count else 0) for i in range(count)]


@dataclass
class _Measured:
    result: LoadResult
    gateway_cpu: float | None
    upstream_cpu: float


class _McpBench:
    def __init__(self, options: Options, root: Path, upstream: McpUpstream, gateway: Gateway | None) -> None:
        self.options = options
        self.root = root
        self.upstream = upstream
        self.gateway = gateway
        self.targets = [Target("direct", upstream.port, DIRECT_TOOL)]
        if gateway is not None:
            self.targets.append(Target("gateway", gateway.port, GATEWAY_TOOL))

    def _check_processes(self) -> None:
        if not self.upstream.process.alive():
            raise RuntimeError(f"MCP upstream exited during the benchmark:\n{self.upstream.process.log_tail(60)}")
        if self.gateway is not None and not self.gateway.process.alive():
            raise GatewayError(f"gateway exited during the benchmark:\n{self.gateway.process.log_tail(60)}")

    def load(self, target: Target, sessions: int, duration: float) -> _Measured:
        clients: list[_LoadProcess] = []
        finished = False
        try:
            for index, share in enumerate(_shares(sessions, self.options.mcp_clients)):
                log_path = self.root / f"mcp-load-{target.name}-{index}.log"
                clients.append(_LoadProcess(target, share, duration, log_path))
            for client in clients:
                client.message(_SETUP_TIMEOUT)  # {"ready": ...}: sessions open, one call each checked
            gateway_before = procstat.snapshot(self.gateway.pid).cpu_seconds if self.gateway else None
            upstream_before = procstat.snapshot(self.upstream.pid).cpu_seconds
            for client in clients:
                client.go()
            parts = [client.message(duration + 60) for client in clients]
            upstream_cpu = procstat.snapshot(self.upstream.pid).cpu_seconds - upstream_before
            gateway_cpu = None
            if self.gateway is not None and gateway_before is not None and target.name == "gateway":
                gateway_cpu = procstat.snapshot(self.gateway.pid).cpu_seconds - gateway_before
            finished = True
        except LoadError:
            self._check_processes()
            raise
        finally:
            for client in clients:
                client.stop(graceful=finished)  # on errors and Ctrl-C: kill at once
        self._check_processes()
        return _Measured(LoadResult.merge(sessions, parts), gateway_cpu, upstream_cpu)

    def verify_gateway(self, timeout: float) -> None:
        """One session, a few calls through the gateway; retried while the gateway settles."""
        deadline = time.monotonic() + timeout
        gateway = next(t for t in self.targets if t.name == "gateway")
        while True:
            try:
                measured = self.load(gateway, 1, 0.2)
                if measured.result.calls and not measured.result.errors:
                    return
                problem = measured.result.error_sample or "no successful call"
            except LoadError as exc:
                problem = str(exc)
            if time.monotonic() > deadline:
                raise GatewayError(f"tools/call {GATEWAY_TOOL} through the gateway failed: {problem}")
            time.sleep(0.5)

    def warm_up(self) -> None:
        sessions = min(16, max(self.options.sessions))
        for target in self.targets:
            self.load(target, sessions, self.options.warmup)

    def run_all(self, results: McpResults) -> None:
        opts = self.options
        total = len(opts.sessions) * opts.runs
        done = 0
        for sessions in opts.sessions:
            for index in range(opts.runs):
                done += 1
                parts = []
                for target in self.targets:  # interleaved so drift hits both targets alike
                    measured = self.load(target, sessions, opts.duration)
                    run = McpRun(target.name, index, measured.result, measured.gateway_cpu, measured.upstream_cpu)
                    results.runs.append(run)
                    r = run.result
                    errors = f" errors={r.errors}" if r.errors else ""
                    p50 = f"{r.p50_ms:7.3f}" if r.p50_ms is not None else "      -"
                    parts.append(f"{target.name} {r.calls_per_s:7.0f} calls/s p50 {p50} ms{errors}")
                log(f"[{done}/{total}] mcp sessions={sessions:<3d} run {index + 1}: " + " | ".join(parts))


def _meta(options: Options) -> dict[str, Any]:
    try:
        sdk = importlib.metadata.version("mcp")
    except importlib.metadata.PackageNotFoundError:
        sdk = "?"
    return {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "duration_s": options.duration,
        "warmup_s": options.warmup,
        "runs": options.runs,
        "sessions": list(options.sessions),
        "workers": options.workers,
        "mcp_clients": options.mcp_clients,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(REPO_ROOT),
        "upstream": f"MCP SDK {sdk} MCPServer, streamable HTTP (stateful, SSE answers), uvicorn+uvloop+httptools",
        "direct_tool": DIRECT_TOOL,
        "gateway_tool": GATEWAY_TOOL,
        "load_generator": (
            f"raw HTTP/1.1 JSON-RPC, one keep-alive connection per session, uvloop, "
            f"up to {options.mcp_clients} process(es)"
        ),
    }


def _start_gateway(options: Options, root: Path, upstream: McpUpstream, results: McpResults) -> Gateway | None:
    if options.direct_only:
        return None
    log(f"starting gateway ({options.heimdall} serve, workers={options.workers}) with MCP client {MCP_CLIENT_NAME!r}")
    try:
        gateway = Gateway(
            options.heimdall, root, mcp_gateway_config(upstream.mcp_url), options.workers, options.gateway_timeout
        )
    except GatewayError as exc:
        results.gateway_error = str(exc)
        log(f"{exc}\nbench: continuing with the direct (MCP upstream) path only")
        return None
    try:
        gateway.wait_mcp_connected(MCP_CLIENT_NAME, options.gateway_timeout)
    except GatewayError as exc:
        gateway.stop()
        results.gateway_error = str(exc)
        log(f"{exc}\nbench: continuing with the direct (MCP upstream) path only")
        return None
    log(f"gateway ready on {gateway.base_url}; MCP client {MCP_CLIENT_NAME!r} connected")
    return gateway


def _measure(options: Options, root: Path, upstream: McpUpstream, results: McpResults) -> None:
    with contextlib.ExitStack() as stack:
        gateway = _start_gateway(options, root, upstream, results)
        if gateway is not None:
            stack.callback(gateway.stop)
        bench = _McpBench(options, root, upstream, gateway)
        if gateway is not None:
            try:
                bench.verify_gateway(options.gateway_timeout)
            except GatewayError as exc:
                results.gateway_error = f"{exc}\n{gateway.process.log_tail(60)}"
                log(f"{results.gateway_error}\nbench: continuing with the direct (MCP upstream) path only")
                gateway.stop()
                gateway = bench.gateway = None
                bench.targets = bench.targets[:1]
        log("warming up (mcp)")
        bench.warm_up()
        sampler = None
        if gateway is not None:
            results.memory["idle_rss_kib"] = procstat.snapshot(gateway.pid).rss_kib
            sampler = stack.enter_context(procstat.RssSampler(gateway.pid))
        bench.run_all(results)
        if gateway is not None and sampler is not None:
            results.memory |= procstat.final_memory(gateway.pid, sampler)


def run(options: Options) -> int:
    """The MCP part: 0 on success, 1 when the gateway (or the part) could not be measured."""
    root = Path(tempfile.mkdtemp(prefix="heimdall-bench-mcp-"))
    results = McpResults(meta=_meta(options))
    try:
        log(f"starting MCP upstream (temp dir {root})")
        try:
            upstream = McpUpstream(root)
        except RuntimeError as exc:
            results.error = str(exc)
            log(str(exc))
        else:
            try:
                _measure(options, root, upstream, results)
            except GatewayError as exc:
                results.gateway_error = str(exc)
                log(str(exc))
            except (LoadError, RuntimeError) as exc:
                results.error = str(exc)
                log(str(exc))
            finally:
                upstream.stop()
    finally:
        if options.keep_tmp:
            log(f"kept temp dir {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    rows = summarize(results)
    print(render(results, rows), flush=True)
    merge_json(options.output, "mcp", results_json(results, rows))
    log(f'MCP results written to {options.output} (key "mcp")')
    return 1 if results.gateway_error or results.error else 0
