"""A fast MCP upstream for the bench: the SDK's ``MCPServer`` over streamable HTTP, run as its own process.

``python -m bench.mcp_upstream --port N`` serves ``/mcp`` (default stateful streamable HTTP, SSE
responses) and ``GET /health`` on 127.0.0.1 under uvicorn with uvloop and httptools. Tools:
``echo(text) -> text`` and ``add(a, b) -> a + b``; both answer at once, so every millisecond
measured is transport and framework cost.
"""

from __future__ import annotations

import argparse
import ipaddress

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

MCP_PATH = "/mcp"
SERVER_NAME = "bench"


def build_server() -> MCPServer:
    server = MCPServer(SERVER_NAME, version="1.0", log_level="WARNING")

    @server.tool(description="Echo the text back.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    return server


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


def build_app(json_response: bool = False, stateless: bool = False) -> Starlette:
    app = build_server().streamable_http_app(
        streamable_http_path=MCP_PATH, json_response=json_response, stateless_http=stateless, host="127.0.0.1"
    )
    app.add_route("/health", health, methods=["GET"])
    return app


def _loopback(text: str) -> str:
    if not ipaddress.ip_address(text).is_loopback:
        raise argparse.ArgumentTypeError("the bench upstream listens on loopback addresses only")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mcp_upstream", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", type=_loopback, default="127.0.0.1")
    parser.add_argument("--json-response", action="store_true", help="answer POSTs with JSON instead of SSE")
    parser.add_argument("--stateless", action="store_true", help="no sessions (stateless streamable HTTP)")
    args = parser.parse_args(argv)
    uvicorn.run(
        build_app(args.json_response, args.stateless),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_keep_alive=120,  # the load generator's sessions may sit idle between setup and the run
        timeout_graceful_shutdown=1,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
