"""The application factory: ``create_app(settings)`` builds everything; nothing happens at import time."""

from __future__ import annotations

import gc
import logging
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from heimdall import __version__
from heimdall.api import errors as api_errors
from heimdall.api.oauth_routes import callback_handlers
from heimdall.api.routes import build_api_router
from heimdall.asgi import ASGIApp, Receive, Scope, Send
from heimdall.config.loader import load_config_file
from heimdall.config.seed import seed_store
from heimdall.crypto import SecretBox, load_or_create_key
from heimdall.gateway import Gateway
from heimdall.governance.request_log import RequestLog
from heimdall.llm.anthropic_endpoint import AnthropicEndpoints
from heimdall.llm.http1 import HTTP1Client
from heimdall.llm.pipeline import InferencePipeline
from heimdall.mcp.endpoint import MCPEndpoint
from heimdall.mcp.llm_bridge import ToolExecuteEndpoint
from heimdall.mcp.service import MCPService
from heimdall.metrics import Metrics
from heimdall.oauth.oidc.attempts import sweep_expired as sweep_oidc_attempts
from heimdall.oauth.oidc.routes import install_login_hook
from heimdall.oauth.per_user import PerUserCredentials, per_user_callback, sweep_upstream_logins
from heimdall.oauth.per_user.pages import sign_in_connections_page
from heimdall.oauth.server.pages import STATIC_DIR, STATIC_PATH
from heimdall.oauth.server.sweeper import Sweeper
from heimdall.oauth.upstream.tokens import BackgroundRefresher, ServerTokenCredentials, UpstreamTokens
from heimdall.settings import Settings
from heimdall.state import SnapshotHolder
from heimdall.store import repos
from heimdall.store.engine import create_engine, create_sessionmaker
from heimdall.store.migrate import upgrade_to_head
from heimdall.store.repos import Store
from heimdall.store.session_repos import delete_expired_sessions
from heimdall.ui import routes as ui_routes

log = logging.getLogger("heimdall")


async def ensure_admin_credential(store: Store, settings: Settings) -> str | None:
    """Install the configured admin token, or generate one on first run; returns a generated token."""
    async with store.transaction() as session:
        if settings.admin_token is not None:
            await repos.set_admin_token(session, store.box, settings.admin_token.get_secret_value())
            return None
        if await repos.admin_credential_exists(session):
            return None
        token = "hk-admin-" + secrets.token_urlsafe(24)
        await repos.set_admin_token(session, store.box, token)
        return token


def announce(message: str) -> None:
    """First-run secrets go to the terminal once (stderr), never to the log stream."""
    print(message, file=sys.stderr, flush=True)


async def open_gateway(settings: Settings) -> Gateway:
    settings.app_dir.mkdir(parents=True, exist_ok=True)
    key = load_or_create_key(
        settings.app_dir, settings.encryption_key.get_secret_value() if settings.encryption_key else None
    )
    box = SecretBox(key)
    engine = create_engine(settings.database_url)
    store = Store(engine, create_sessionmaker(engine), box)
    await upgrade_to_head(engine)
    generated = await ensure_admin_credential(store, settings)
    if generated:
        announce(
            "\n  Heimdall generated an admin token (shown once; set HEIMDALL_ADMIN_TOKEN to choose your own):\n"
            f"    {generated}\n"
        )
    if settings.config is not None:
        loaded = load_config_file(settings.config)
        for warning in loaded.warnings:
            log.warning("%s", warning)
        async with store.transaction() as session:
            report = await seed_store(session, box, loaded.config)
        log.info(
            "seeded the store from %s: %d providers, %d keys, %d virtual keys",
            settings.config,
            report.providers,
            report.keys,
            report.virtual_keys,
        )
        for name, value in report.generated_virtual_keys.items():
            announce(f"  Virtual key {name!r} was generated (shown once): {value}")
    snapshots = SnapshotHolder(store, settings.config_poll_seconds, settings.redis_url)
    await snapshots.reload()
    http = HTTP1Client()
    metrics = Metrics()
    pipeline = InferencePipeline(http, metrics)
    gateway = Gateway(
        settings=settings,
        store=store,
        box=box,
        snapshots=snapshots,
        metrics=metrics,
        http=http,
        pipeline=pipeline,
        request_log=RequestLog.from_settings(store, metrics.registry, settings),
    )
    mcp = MCPService(store, box, pipeline, __version__)
    mcp.server.record_tool_call = gateway.request_log.record
    tokens = UpstreamTokens(store)
    mcp.credentials.register("oauth", ServerTokenCredentials(tokens))
    mcp.credentials.register("per_user_oauth", PerUserCredentials(gateway))
    gateway.mcp = mcp
    gateway.upstream_tokens = tokens
    gateway.token_refresher = BackgroundRefresher(tokens)

    async def resync_mcp(_snapshot: object) -> None:
        await mcp.reload_specs()

    snapshots.listeners.append(resync_mcp)
    return gateway


async def close_gateway(gateway: Gateway) -> None:
    await gateway.snapshots.stop()
    if gateway.token_refresher is not None:
        await gateway.token_refresher.stop()
    if gateway.mcp is not None:
        await gateway.mcp.upstreams.close()
    await gateway.http.close()
    await gateway.store.engine.dispose()


class HotPathRouter:
    """Serves the inference endpoints directly and hands everything else to the FastAPI app.

    The inference routes are the gateway's hot path; skipping the framework's routing, dependency
    injection and response models there is worth several hundred microseconds per request.
    """

    def __init__(self, api: FastAPI) -> None:
        self.api = api
        self.routes: dict[str, ASGIApp] = {}

    def bind(self, gateway: Gateway) -> None:
        if gateway.mcp is not None:
            self.routes["/mcp"] = MCPEndpoint(gateway, gateway.mcp.server)
            self.routes["/v1/mcp/tool/execute"] = ToolExecuteEndpoint(gateway)
        endpoints = AnthropicEndpoints(gateway)
        self.routes["/anthropic/v1/messages"] = endpoints.messages
        for prefix in ("", "/openai"):
            self.routes[f"{prefix}/v1/chat/completions"] = endpoints.chat_completions
            self.routes[f"{prefix}/v1/embeddings"] = endpoints.embeddings
            self.routes[f"{prefix}/v1/models"] = endpoints.models

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self.routes.get(scope["path"])
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self.api(scope, receive, send)


def create_app(settings: Settings) -> HotPathRouter:
    router: HotPathRouter

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway = await open_gateway(settings)
        app.state.gateway = gateway
        app.state.mcp = gateway.mcp
        router.bind(gateway)
        try:
            async with AsyncExitStack() as stack:
                if gateway.mcp is not None:
                    await stack.enter_async_context(gateway.mcp.server.running())
                    await gateway.mcp.upstreams.start()
                    await gateway.mcp.reload_specs()
                if gateway.token_refresher is not None:
                    gateway.token_refresher.start()
                sweeper = Sweeper(gateway)
                sweeper.add_job("upstream_logins", sweep_upstream_logins)
                sweeper.add_job("oidc_attempts", sweep_oidc_attempts)
                sweeper.add_job("admin_sessions", delete_expired_sessions)
                sweeper.start()
                stack.push_async_callback(sweeper.stop)
                gateway.request_log.start()
                stack.push_async_callback(gateway.request_log.stop)  # writes what is still queued
                gateway.snapshots.start()
                # What exists now (modules, routes, schemas, the snapshot: most of the heap) lives as long as
                # the process; frozen, it is left out of every full collection, each of which otherwise
                # stops the event loop for ~100 ms under load.
                gc.freeze()
                stack.callback(gc.unfreeze)
                log.info("Heimdall %s listening on %s (web UI: %s/)", __version__, settings.base_url, settings.base_url)
                yield
        finally:
            await close_gateway(gateway)

    api = FastAPI(
        title="Heimdall",
        version=__version__,
        description="AI gateway: OpenAI-compatible LLM gateway and MCP gateway with per-user OAuth 2.1.",
        lifespan=lifespan,
    )
    api_errors.install(api)
    callback_handlers(api).insert(0, per_user_callback)
    install_login_hook(api, sign_in_connections_page)
    api.include_router(build_api_router())
    ui_routes.install(api)
    api.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")
    router = HotPathRouter(api)
    return router


def create_app_from_env() -> HotPathRouter:
    """Factory for ``--workers`` > 1: each worker process builds its settings from the environment."""
    return create_app(Settings())
