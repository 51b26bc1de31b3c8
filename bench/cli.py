"""Command-line options for ``python -m bench``."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from bench.report import MODES

PARTS = ("llm", "mcp")

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "latest.json"
DEFAULT_HEIMDALL = BENCH_DIR.parent / ".venv" / "bin" / "heimdall"


@dataclass(frozen=True)
class Options:
    parts: tuple[str, ...]
    duration: float
    runs: int
    connections: tuple[int, ...]
    modes: tuple[str, ...]
    workers: int
    ttfb_requests: int
    warmup: float
    direct_only: bool
    heimdall: Path
    output: Path
    gateway_timeout: float
    keep_tmp: bool
    sessions: tuple[int, ...] = (1, 16)
    mcp_clients: int = 1


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("counts must be >= 1")
    return values


def _modes(text: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = set(values) - set(MODES)
    if not values or unknown:
        raise argparse.ArgumentTypeError(f"modes are {', '.join(MODES)}")
    return values


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure Heimdall's overhead: /v1/chat/completions over a fixed-response nginx upstream (wrk), "
        "and MCP tools/call through /mcp over an SDK MCP server (llm and mcp parts; both by default).",
    )
    parser.add_argument("--only", choices=PARTS, help="run one part only: llm (nginx + wrk) or mcp (MCP gateway)")
    parser.add_argument("--duration", type=float, help="seconds per load run (default 5; 2 with --quick)")
    parser.add_argument("--runs", type=int, help="runs per cell, median reported (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 1 run x 2 s, fewer TTFB requests")
    parser.add_argument("--connections", type=_int_list, default=(1, 16, 64), help="llm: e.g. 1,16,64 (default)")
    parser.add_argument("--modes", type=_modes, default=MODES, help="llm: json,stream (default both)")
    parser.add_argument(
        "--sessions", type=_int_list, default=(1, 16), help="mcp: concurrent MCP sessions, e.g. 1,16 (default)"
    )
    parser.add_argument(
        "--mcp-clients", type=int, default=1, help="mcp: load-generator processes sharing the sessions (default 1)"
    )
    parser.add_argument("--workers", type=int, default=1, help="HEIMDALL_WORKERS for the gateway (default 1)")
    parser.add_argument("--ttfb-requests", type=int, help="llm: sequential streaming requests for TTFB (default 200)")
    parser.add_argument(
        "--direct-only", action="store_true", help="measure the upstreams only (nginx, MCP server); no gateway"
    )
    parser.add_argument("--heimdall", type=Path, default=DEFAULT_HEIMDALL, help="path to the heimdall executable")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    parser.add_argument("--gateway-timeout", type=float, default=30.0, help="seconds to wait for GET /health")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs) for inspection")
    args = parser.parse_args(argv)
    duration = args.duration if args.duration is not None else (2.0 if args.quick else 5.0)
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    ttfb = args.ttfb_requests if args.ttfb_requests is not None else (50 if args.quick else 200)
    if duration <= 0 or runs < 1 or args.workers < 1 or ttfb < 0 or args.mcp_clients < 1:
        parser.error("--duration must be > 0, --runs, --workers and --mcp-clients >= 1, --ttfb-requests >= 0")
    return Options(
        parts=(args.only,) if args.only else PARTS,
        duration=duration,
        runs=runs,
        connections=args.connections,
        modes=args.modes,
        workers=args.workers,
        ttfb_requests=ttfb,
        warmup=1.0,
        direct_only=args.direct_only,
        heimdall=args.heimdall,
        output=args.output,
        gateway_timeout=args.gateway_timeout,
        keep_tmp=args.keep_tmp,
        sessions=args.sessions,
        mcp_clients=args.mcp_clients,
    )


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from bench.runner import run  # imported lazily to keep --help fast

    options = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)  # run cleanup (finally blocks) on SIGTERM too
    try:
        return run(options)
    except KeyboardInterrupt:
        print("\nbench: interrupted; processes stopped", file=sys.stderr)
        return 130
