"""Orchestration of the LLM part (tools, nginx, gateway, wrk runs, TTFB, memory, report) and of both parts.

Every part cleans up its processes, also on Ctrl-C/SIGTERM (``KeyboardInterrupt`` unwinds the ``finally`` blocks).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procstat, ttfb, wrk
from bench.cli import Options
from bench.gateway import Gateway, GatewayError, gateway_config
from bench.payloads import CHAT_PATH, STREAM_PREFIX, request_body
from bench.report import Results, Run, merge_json, render, results_json, summarize
from bench.tools import ToolError, ensure_tools
from bench.upstream import Upstream


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def git_commit(cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True)
    except OSError:
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _meta(options: Options) -> dict[str, Any]:
    return {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "duration_s": options.duration,
        "runs": options.runs,
        "connections": list(options.connections),
        "modes": list(options.modes),
        "workers": options.workers,
        "ttfb_requests": options.ttfb_requests,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(Path(__file__).resolve().parent),
    }


class _Bench:
    def __init__(self, options: Options, wrk_bin: str, root: Path, upstream: Upstream, gateway: Gateway | None):
        self.options = options
        self.wrk_bin = wrk_bin
        self.upstream = upstream
        self.gateway = gateway
        self.scripts = {
            mode: wrk.write_script(root / f"{mode}.lua", request_body(mode == "stream")) for mode in options.modes
        }

    def url(self, mode: str, target: str) -> str:
        if target == "gateway":
            assert self.gateway is not None
            return f"{self.gateway.base_url}{CHAT_PATH}"
        prefix = STREAM_PREFIX if mode == "stream" else ""
        return f"{self.upstream.base_url}{prefix}{CHAT_PATH}"

    @property
    def targets(self) -> tuple[str, ...]:
        return ("direct", "gateway") if self.gateway is not None else ("direct",)

    def _check_gateway(self) -> None:
        if self.gateway is not None and not self.gateway.process.alive():
            raise GatewayError(f"gateway exited during the benchmark:\n{self.gateway.process.log_tail(60)}")

    def one(self, mode: str, connections: int, target: str, index: int, duration: float) -> Run:
        before = procstat.snapshot(self.gateway.pid).cpu_seconds if target == "gateway" and self.gateway else None
        result = wrk.run(self.wrk_bin, self.url(mode, target), self.scripts[mode], connections, duration)
        cpu = None
        if before is not None and self.gateway is not None:
            self._check_gateway()
            cpu = procstat.snapshot(self.gateway.pid).cpu_seconds - before
        return Run(mode, connections, target, index, result, cpu)

    def warm_up(self) -> None:
        for mode in self.options.modes:
            for target in self.targets:
                self.one(mode, min(16, max(self.options.connections)), target, -1, self.options.warmup)

    def load(self, results: Results) -> None:
        opts = self.options
        total = len(opts.modes) * len(opts.connections) * opts.runs
        done = 0
        for mode in opts.modes:
            for connections in opts.connections:
                for index in range(opts.runs):
                    done += 1
                    parts = []
                    for target in self.targets:  # interleaved so drift hits both targets alike
                        run = self.one(mode, connections, target, index, opts.duration)
                        results.runs.append(run)
                        r = run.result
                        errors = f" errors={r.errors}" if r.errors else ""
                        parts.append(f"{target} {r.rps:8.0f} rps p50 {r.p50_us / 1e3:7.3f} ms{errors}")
                    log(f"[{done}/{total}] {mode:6s} c={connections:<3d} run {index + 1}: " + " | ".join(parts))

    def measure_ttfb(self, results: Results) -> None:
        if "stream" not in self.options.modes or not self.options.ttfb_requests:
            return
        log("measuring streaming TTFB")
        body = request_body(True)
        results.ttfb["direct"] = ttfb.measure(
            self.upstream.port, f"{STREAM_PREFIX}{CHAT_PATH}", body, self.options.ttfb_requests
        )
        if self.gateway is not None:
            results.ttfb["gateway"] = ttfb.measure(self.gateway.port, CHAT_PATH, body, self.options.ttfb_requests)


def _start_gateway(options: Options, root: Path, upstream: Upstream, results: Results) -> Gateway | None:
    if options.direct_only:
        return None
    log(f"starting gateway ({options.heimdall} serve, workers={options.workers})")
    try:
        config = gateway_config(upstream.base_url)
        gateway = Gateway(options.heimdall, root, config, options.workers, options.gateway_timeout)
    except GatewayError as exc:
        results.gateway_error = str(exc)
        log(f"{exc}\nbench: continuing with the direct (nginx) path only")
        return None
    try:
        gateway.verify()
    except GatewayError as exc:
        gateway.stop()
        results.gateway_error = str(exc)
        log(f"{exc}\nbench: continuing with the direct (nginx) path only")
        return None
    log(f"gateway ready on {gateway.base_url}")
    return gateway


def _measure(options: Options, wrk_bin: str, root: Path, upstream: Upstream, results: Results) -> None:
    with contextlib.ExitStack() as stack:
        gateway = _start_gateway(options, root, upstream, results)
        if gateway is not None:
            stack.callback(gateway.stop)
        bench = _Bench(options, wrk_bin, root, upstream, gateway)
        log("warming up")
        bench.warm_up()
        sampler = None
        if gateway is not None:
            idle = procstat.snapshot(gateway.pid)
            results.memory["idle_rss_kib"] = idle.rss_kib
            sampler = stack.enter_context(procstat.RssSampler(gateway.pid))
        bench.load(results)
        bench.measure_ttfb(results)
        if gateway is not None and sampler is not None:
            results.memory |= procstat.final_memory(gateway.pid, sampler)


def run(options: Options) -> int:
    """Run the selected parts in order (llm, then mcp); the worst exit code wins."""
    codes = []
    if "llm" in options.parts:
        codes.append(run_llm(options))
    if "mcp" in options.parts:
        from bench import mcp_runner

        if codes:
            print(flush=True)
        codes.append(mcp_runner.run(options))
    return max(codes)


def run_llm(options: Options) -> int:
    try:
        tools = ensure_tools()
    except ToolError as exc:
        log(str(exc))
        return 2
    root = Path(tempfile.mkdtemp(prefix="heimdall-bench-"))
    results = Results(meta=_meta(options))
    try:
        log(f"starting nginx upstream (temp dir {root})")
        upstream = Upstream(tools.nginx, root)
        try:
            _measure(options, tools.wrk, root, upstream, results)
        finally:
            upstream.stop()
    except GatewayError as exc:
        results.gateway_error = str(exc)
        log(str(exc))
    finally:
        if options.keep_tmp:
            log(f"kept temp dir {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    rows = summarize(results)
    print(render(results, rows), flush=True)
    merge_json(options.output, "llm", results_json(results, rows))
    log(f"results written to {options.output}")
    return 1 if results.gateway_error else 0
