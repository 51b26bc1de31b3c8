"""Aggregate wrk runs (median per mode x connections), print the table, write the JSON file."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.ttfb import TtfbResult
from bench.wrk import WrkResult

MODES = ("json", "stream")
TARGETS = ("direct", "gateway")


@dataclass(frozen=True)
class Run:
    mode: str
    connections: int
    target: str
    index: int
    result: WrkResult
    cpu_seconds: float | None = None  # gateway process tree only

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.cpu_seconds is None or not self.result.requests:
            return None
        return self.cpu_seconds * 1e3 / self.result.requests

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "connections": self.connections, "target": self.target}
        out |= {"run": self.index, **self.result.to_json()}
        if self.cpu_seconds is not None:
            out["cpu_seconds"] = round(self.cpu_seconds, 3)
            out["cpu_ms_per_request"] = self.cpu_ms_per_request
        return out


@dataclass
class Results:
    meta: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    ttfb: dict[str, TtfbResult] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    gateway_error: str | None = None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(results: Results) -> list[dict[str, Any]]:
    """One row per mode x connections, medians over runs."""
    rows = []
    keys = sorted({(r.mode, r.connections) for r in results.runs}, key=lambda k: (MODES.index(k[0]), k[1]))
    for mode, connections in keys:
        row: dict[str, Any] = {"mode": mode, "connections": connections}
        for target in TARGETS:
            runs = [r for r in results.runs if (r.mode, r.connections, r.target) == (mode, connections, target)]
            row[f"{target}_rps"] = _median([r.result.rps for r in runs])
            row[f"{target}_p50_ms"] = _median([r.result.p50_us / 1e3 for r in runs])
            row[f"{target}_p99_ms"] = _median([r.result.p99_us / 1e3 for r in runs])
            row[f"{target}_errors"] = sum(r.result.errors for r in runs) if runs else None
        gw_runs = [r for r in results.runs if (r.mode, r.connections, r.target) == (mode, connections, "gateway")]
        cpu = [r.cpu_ms_per_request for r in gw_runs if r.cpu_ms_per_request is not None]
        row["gateway_cpu_ms_per_request"] = _median(cpu)
        row["gateway_cpu_cores"] = _median(
            [r.cpu_seconds / (r.result.duration_us / 1e6) for r in gw_runs if r.cpu_seconds is not None]
        )
        direct, gateway = row["direct_rps"], row["gateway_rps"]
        row["ratio"] = gateway / direct if direct and gateway is not None else None
        if row["gateway_p50_ms"] is not None and row["direct_p50_ms"] is not None:
            row["added_p50_ms"] = row["gateway_p50_ms"] - row["direct_p50_ms"]
        else:
            row["added_p50_ms"] = None
        rows.append(row)
    return rows


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


Column = tuple[str, int, str, str]  # title, width, format spec, row key

_COLUMNS: tuple[Column, ...] = (
    ("mode", 6, "s", "mode"),
    ("conns", 5, "d", "connections"),
    ("direct rps", 10, ".0f", "direct_rps"),
    ("gw rps", 8, ".0f", "gateway_rps"),
    ("gw/dir", 6, ".3f", "ratio"),
    ("dir p50", 7, ".3f", "direct_p50_ms"),
    ("dir p99", 7, ".3f", "direct_p99_ms"),
    ("gw p50", 7, ".3f", "gateway_p50_ms"),
    ("gw p99", 7, ".3f", "gateway_p99_ms"),
    ("+p50 ms", 7, ".3f", "added_p50_ms"),
    ("gw CPU ms/req", 13, ".3f", "gateway_cpu_ms_per_request"),
    ("gw cores", 8, ".2f", "gateway_cpu_cores"),
    ("gw errs", 7, "d", "gateway_errors"),
)


def table(rows: list[dict[str, Any]], columns: tuple[Column, ...] = _COLUMNS) -> str:
    header = "  ".join(title.rjust(width) for title, width, _, _ in columns)
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append("  ".join(_fmt(row[key], spec).rjust(width) for _, width, spec, key in columns))
    return "\n".join(lines)


def render(results: Results, rows: list[dict[str, Any]]) -> str:
    meta = results.meta
    out = [
        f"Heimdall LLM bench (/v1/chat/completions): {meta['runs']} run(s) x {meta['duration_s']:g}s per cell, "
        f"median shown; latencies in ms; gateway workers={meta['workers']}; {meta['cpus']} CPUs",
        "",
        table(rows),
    ]
    if results.ttfb:
        out += ["", f"Streaming time to first SSE frame ({meta['ttfb_requests']} sequential requests, median ms):"]
        for target in TARGETS:
            if target in results.ttfb:
                t = results.ttfb[target]
                out.append(
                    f"  {target:8s} headers {t.headers_ms:7.3f}  first frame {t.first_frame_ms:7.3f}  "
                    f"(p90 {t.first_frame_p90_ms:7.3f})  complete {t.total_ms:7.3f}"
                )
        if len(results.ttfb) == 2:
            added = results.ttfb["gateway"].first_frame_ms - results.ttfb["direct"].first_frame_ms
            out.append(f"  added TTFB (first frame, gateway - direct): {added:.3f} ms")
    if results.memory:
        mem = results.memory
        out += [
            "",
            f"Gateway memory ({mem['processes']} process(es)): RSS idle {mem['idle_rss_kib'] / 1024:.1f} MiB, "
            f"peak sampled RSS {mem['peak_sampled_rss_kib'] / 1024:.1f} MiB, "
            f"peak VmHWM (sum) {mem['peak_hwm_kib'] / 1024:.1f} MiB",
        ]
    if results.gateway_error:
        out += ["", "GATEWAY NOT MEASURED:", results.gateway_error]
    return "\n".join(out)


def results_json(results: Results, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The LLM part's JSON document (top level of ``latest.json``)."""
    ttfb: dict[str, Any] = {target: result.to_json() for target, result in results.ttfb.items()}
    if len(results.ttfb) == 2:
        ttfb["added_first_frame_ms"] = results.ttfb["gateway"].first_frame_ms - results.ttfb["direct"].first_frame_ms
    payload = {
        "meta": results.meta,
        "summary": rows,
        "ttfb_ms": ttfb,
        "memory": results.memory,
        "gateway_error": results.gateway_error,
        "runs": [run.to_json() for run in results.runs],
    }
    return payload


def merge_json(path: Path, part: str, payload: dict[str, Any]) -> None:
    """Write one part's results into ``path``, keeping the other part's results already there.

    The LLM part owns the top-level keys (as before the MCP part existed); the MCP part lives under ``"mcp"``.
    """
    try:
        existing = json.loads(path.read_text())
    except (OSError, ValueError):
        existing = {}
    if not isinstance(existing, dict):
        existing = {}
    if part == "llm":
        merged = dict(payload)
        if "mcp" in existing:
            merged["mcp"] = existing["mcp"]
    else:
        merged = {**existing, part: payload}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2) + "\n")
