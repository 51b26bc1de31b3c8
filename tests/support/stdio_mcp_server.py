"""A stdio MCP server for tests, run as ``python tests/support/stdio_mcp_server.py`` (imports nothing from tests).

Tools: ``add``, ``echo``, ``env`` (an environment variable), ``pid`` (this process id) and
``exit_soon`` (answers, then exits with the given code). With ``STDIO_SERVER_EXIT_AFTER=<seconds>``
in its environment the process exits by itself that long after starting.
"""

from __future__ import annotations

import os
import threading

from mcp.server.mcpserver import MCPServer

server = MCPServer("stdio-notes", version="1.0", log_level="WARNING")


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> int:
    return a + b


@server.tool(description="Echo the text back.")
def echo(text: str) -> str:
    return text


@server.tool(description="An environment variable of the server process.")
def env(name: str) -> str:
    return os.environ.get(name, "")


@server.tool(description="The server's process id.")
def pid() -> int:
    return os.getpid()


@server.tool(description="Answer, then exit with `code` shortly after.")
def exit_soon(code: int = 0) -> str:
    _exit_later(0.05, code)
    return "bye"


def _exit_later(seconds: float, code: int) -> None:
    timer = threading.Timer(seconds, os._exit, (code,))
    timer.daemon = True
    timer.start()


def main() -> None:
    exit_after = os.environ.get("STDIO_SERVER_EXIT_AFTER")
    if exit_after:
        _exit_later(float(exit_after), 0)
    server.run("stdio")


if __name__ == "__main__":
    main()
