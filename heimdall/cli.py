"""``heimdall`` command line: serve, demo, config check, config schema, mcp verify."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from heimdall import __version__

ENV_OPTIONS = {
    "config": "HEIMDALL_CONFIG",
    "app_dir": "HEIMDALL_APP_DIR",
    "host": "HEIMDALL_HOST",
    "port": "HEIMDALL_PORT",
    "db_url": "HEIMDALL_DB_URL",
    "public_url": "HEIMDALL_PUBLIC_URL",
    "workers": "HEIMDALL_WORKERS",
    "log_level": "HEIMDALL_LOG_LEVEL",
}


def _env_only_help() -> str:
    """The settings that have no option, so that ``serve --help`` names every variable the gateway reads."""
    from heimdall.settings import Settings

    lines = ["settings read only from the environment:"]
    for name, field in Settings.model_fields.items():
        if name not in ENV_OPTIONS:
            about = field.description or f"default {field.default!r}"
            lines.append(f"  HEIMDALL_{name.upper():<24} {about}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heimdall",
        description="Heimdall AI gateway: OpenAI-compatible LLM gateway and MCP gateway with per-user OAuth.",
    )
    parser.add_argument("--version", action="version", version=f"heimdall {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway. Every option is also an environment variable (shown in brackets).",
        epilog=_env_only_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--config", type=Path, help="config.json that seeds the store [HEIMDALL_CONFIG]")
    serve.add_argument(
        "--app-dir", type=Path, help="directory for the SQLite store and keys (default ./data) [HEIMDALL_APP_DIR]"
    )
    serve.add_argument("--host", help="listen address (default 127.0.0.1) [HEIMDALL_HOST]")
    serve.add_argument("--port", type=int, help="listen port (default 8080) [HEIMDALL_PORT]")
    serve.add_argument("--db-url", help="database URL: sqlite:///path or postgresql://… [HEIMDALL_DB_URL]")
    serve.add_argument("--public-url", help="externally visible base URL [HEIMDALL_PUBLIC_URL]")
    serve.add_argument("--workers", type=int, help="worker processes (default 1) [HEIMDALL_WORKERS]")
    serve.add_argument("--log-level", help="debug, info, warning or error [HEIMDALL_LOG_LEVEL]")

    demo = commands.add_parser(
        "demo",
        help="run the gateway with a demo OAuth MCP service and a scripted model, and print what to try",
        description="Starts, on 127.0.0.1: the gateway (throwaway app dir, SQLite), a 'notes' MCP service with its "
        "own OAuth login (users alice and bob) and a scripted model that uses the notes tools. Ctrl-C stops all.",
    )
    demo.add_argument("--port", type=int, help="the gateway's port (default 8080, or a free one if taken; 0: any)")
    demo.add_argument("--keep", action="store_true", help="keep the throwaway app dir on exit")
    demo.add_argument("--log-level", default="warning", help="debug, info, warning or error (default warning)")

    config = commands.add_parser("config", help="work with config.json files")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate a config file and print every error with its JSON path")
    check.add_argument("file", type=Path)
    config_commands.add_parser("schema", help="print the JSON Schema of config.json")

    mcp = commands.add_parser("mcp", help="work with MCP servers of a running gateway")
    mcp_commands = mcp.add_subparsers(dest="mcp_command", required=True)
    verify = mcp_commands.add_parser(
        "verify",
        help="run the admin's test login for an oauth or per_user_oauth server declared in config.json",
        description="Prints the URL to open, waits for the login to finish, then completes the setup.",
    )
    verify.add_argument("name", help="the MCP server's name")
    verify.add_argument("--url", help="the gateway's base URL (default HEIMDALL_PUBLIC_URL or http://127.0.0.1:8080)")
    verify.add_argument("--admin-token", help="admin credential (default HEIMDALL_ADMIN_TOKEN)")
    verify.add_argument("--timeout", type=float, default=900, help="seconds to wait for the login (default 900)")
    return parser


def _settings_from(args: argparse.Namespace) -> object:
    from heimdall.settings import Settings

    overrides = {name: getattr(args, name) for name in ENV_OPTIONS if getattr(args, name, None) is not None}
    return Settings(**overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from heimdall.settings import Settings

    try:
        settings = _settings_from(args)
    except ValidationError as exc:
        for err in exc.errors():
            print(f"heimdall: invalid setting {'.'.join(map(str, err['loc']))}: {err['msg']}", file=sys.stderr)
        return 2
    assert isinstance(settings, Settings)
    from heimdall.crypto import CryptoError, load_or_create_key

    try:  # a bad key fails here with one line, not with a traceback from the server's startup
        load_or_create_key(
            settings.app_dir, settings.encryption_key.get_secret_value() if settings.encryption_key else None
        )
    except (CryptoError, OSError) as exc:
        print(f"heimdall: encryption key: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if settings.log_level.lower() != "debug":
        # httpx2 logs every upstream request and the MCP SDK every session at INFO: per-call noise on the hot path.
        for noisy in ("httpx2", "httpx", "mcp"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if settings.config is not None:
        from heimdall.config.loader import ConfigError, load_config_file

        try:
            load_config_file(settings.config)
        except ConfigError as exc:
            print_config_errors(exc)
            return 2
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "access_log": settings.access_log,
        "loop": "uvloop" if sys.platform != "win32" else "asyncio",
        "http": "httptools",
        "lifespan": "on",
        # Forwarded headers are trusted only from configured proxies, by the app itself (W15).
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
    }
    if settings.workers > 1:
        # Workers import the factory by name and rebuild Settings from the environment.
        for name, env in ENV_OPTIONS.items():
            value = getattr(settings, name, None)
            if value is not None:
                os.environ[env] = str(value)
        uvicorn.run("heimdall.app:create_app_from_env", factory=True, workers=settings.workers, **common)  # type: ignore[arg-type]
    else:
        from heimdall.app import create_app

        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
    return 0


def print_config_errors(exc: object) -> None:
    from heimdall.config.loader import ConfigError

    assert isinstance(exc, ConfigError)
    print(f"{exc.source}: {len(exc.issues)} error(s)", file=sys.stderr)
    for issue in exc.issues:
        print(f"  {issue}", file=sys.stderr)


def cmd_config_check(args: argparse.Namespace) -> int:
    from heimdall.config.loader import ConfigError, load_config_file

    try:
        loaded = load_config_file(args.file)
    except ConfigError as exc:
        print_config_errors(exc)
        return 1
    for warning in loaded.warnings:
        print(f"  warning: {warning}")
    config = loaded.config
    keys = sum(len(p.keys) for p in config.providers.values())
    print(
        f"{args.file}: OK ({len(config.providers)} providers, {keys} keys, "
        f"{len(config.governance.virtual_keys)} virtual keys, {len(loaded.warnings)} warnings)"
    )
    return 0


def cmd_config_schema(_args: argparse.Namespace) -> int:
    from heimdall.config.schema import config_json_schema

    print(json.dumps(config_json_schema(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "demo":
        from heimdall.demo.runner import DemoOptions, run_demo

        return run_demo(DemoOptions(port=args.port, keep=args.keep, log_level=args.log_level))
    if args.command == "config" and args.config_command == "check":
        return cmd_config_check(args)
    if args.command == "config" and args.config_command == "schema":
        return cmd_config_schema(args)
    if args.command == "mcp" and args.mcp_command == "verify":
        from heimdall.cli_mcp import cmd_mcp_verify

        return cmd_mcp_verify(args)
    return 2
