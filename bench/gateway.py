"""Run ``heimdall serve`` with a generated config; check that it proxies LLM requests or reaches an MCP upstream."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from bench.payloads import CHAT_PATH, JSON_PROVIDER, STREAM_PREFIX, STREAM_PROVIDER, request_body
from bench.procs import LOOPBACK, ManagedProcess, free_port, get_json, post, wait_ready

ADMIN_TOKEN = "bench-admin-token"
#: Name of the MCP client (upstream) in the MCP bench; the gateway exposes its tools as ``bench-<tool>``.
MCP_CLIENT_NAME = "bench"
PROVIDER_KEY = "sk-bench"
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class GatewayError(RuntimeError):
    """The gateway did not start or does not proxy correctly; the message includes its output."""


def gateway_config(upstream_base_url: str) -> dict[str, Any]:
    def provider(base_url: str) -> dict[str, Any]:
        return {"keys": [{"value": PROVIDER_KEY, "models": ["*"]}], "network_config": {"base_url": base_url}}

    return {
        "providers": {
            JSON_PROVIDER: provider(upstream_base_url),
            STREAM_PROVIDER: provider(f"{upstream_base_url}{STREAM_PREFIX}"),
        }
    }


def mcp_gateway_config(upstream_mcp_url: str) -> dict[str, Any]:
    """One MCP upstream over streamable HTTP, all tools allowed; no LLM providers."""
    client = {
        "name": MCP_CLIENT_NAME,
        "connection_type": "http",
        "connection_string": upstream_mcp_url,
        "tools_to_execute": ["*"],
    }
    return {"mcp": {"client_configs": [client]}}


def _check(stream: bool, status: int, body: bytes) -> str | None:
    """A problem description, or None when the response looks like the upstream's."""
    if status != 200:
        return f"HTTP {status}: {body[:2000]!r}"
    text = body.decode(errors="replace")
    if stream:
        return None if "chat.completion.chunk" in text and "[DONE]" in text else f"not an SSE stream: {text[:2000]}"
    try:
        ok = json.loads(text)["choices"][0]["message"]["content"] is not None
    except (ValueError, KeyError, IndexError, TypeError):
        ok = False
    return None if ok else f"not a chat.completion: {text[:2000]}"


class Gateway:
    """``heimdall serve`` on a free loopback port; ``stop()`` kills it and its workers."""

    def __init__(self, heimdall: Path, root: Path, config: dict[str, Any], workers: int, timeout: float = 30) -> None:
        self.port = free_port()
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        config_path = root / "config.json"
        config_path.write_text(json.dumps(config, indent=2))
        app_dir = root / "app"
        app_dir.mkdir(exist_ok=True)
        env = {key: value for key, value in os.environ.items() if key not in _PROXY_VARS}
        env.update(
            HEIMDALL_ADMIN_TOKEN=ADMIN_TOKEN,
            HEIMDALL_WORKERS=str(workers),
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        argv = [str(heimdall), "serve", "--config", str(config_path), "--app-dir", str(app_dir)]
        argv += ["--host", LOOPBACK, "--port", str(self.port)]
        if not heimdall.exists():
            raise GatewayError(f"{heimdall} does not exist (is the package installed? try `make run`)")
        self.process = ManagedProcess("heimdall", argv, root / "gateway.log", env=env)
        if not wait_ready(self.process, f"{self.base_url}/health", timeout=timeout):
            code = self.process.proc.returncode
            state = "timed out" if code is None else f"exited with code {code}"
            output = self.process.log_tail(60)
            self.process.stop()
            raise GatewayError(
                f"gateway {state} before GET /health returned 200 ({' '.join(argv)}):\n{output or '(no output)'}"
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def verify(self) -> None:
        """One request of each kind must come back like the upstream's answer."""
        for stream in (False, True):
            status, body = post(f"{self.base_url}{CHAT_PATH}", request_body(stream))
            problem = _check(stream, status, body)
            if problem:
                kind = "streaming" if stream else "non-streaming"
                raise GatewayError(f"{kind} request through the gateway failed: {problem}\n{self.process.log_tail()}")

    def wait_mcp_connected(self, name: str, timeout: float) -> None:
        """Poll ``GET /api/mcp/clients`` until the MCP client ``name`` is in state "connected"."""
        deadline = time.monotonic() + timeout
        seen: Any = None
        while time.monotonic() < deadline:
            if not self.process.alive():
                break
            status, seen = get_json(f"{self.base_url}/api/mcp/clients", {"Authorization": f"Bearer {ADMIN_TOKEN}"})
            if status == 200 and isinstance(seen, dict):
                states = {c.get("config", {}).get("name"): c.get("state") for c in seen.get("clients", [])}
                if states.get(name) == "connected":
                    return
            time.sleep(0.1)
        raise GatewayError(
            f"MCP client {name!r} did not reach state 'connected' within {timeout:g}s; "
            f"last GET /api/mcp/clients: {json.dumps(seen)[:2000]}\n{self.process.log_tail(60)}"
        )

    def stop(self) -> None:
        self.process.stop()
